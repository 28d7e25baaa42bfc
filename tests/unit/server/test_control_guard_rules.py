"""The control API's guard: Host, Origin and Content-Type checks, and the body limit.

The pure checks are tested as functions; the wiring through ``build_control_app`` over
``httpx.ASGITransport`` with a gateway that is built but not started (every request
here is refused, or passes the guard and fails on an unknown model, before any
route needs the store).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollwise.config import parse_config
from rollwise.runtime.gateway import Gateway
from rollwise.server.auth import Authenticator
from rollwise.server.control import build_control_app
from rollwise.server.guard import (
    CONTROL_MAX_BODY_BYTES,
    Refusal,
    check_host,
    control_body_limit,
    same_origin,
    split_authority,
)

CONFIG = {
    "store": "sqlite:///state.db",
    "models": {"echo": {"stable": "a", "versions": {"a": {"backend": "fake", "label": 0}}}},
}
JSON = {"content-type": "application/json"}
ROUTING = b'{"weights": {"a": 100}}'
# Refused by the route itself, before it needs a started gateway: proof it got there.
UNCHECKED = b'{"weights": {"a": true}}'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("LocalHost", ("localhost", None)),
        ("[::1]:9000", ("::1", 9000)),
        ("[::1]", ("::1", None)),
        ("example.com.:80", ("example.com", 80)),
        ("host:port", None),
        ("host:99999", None),
        ("[::1", None),
        (":8080", None),
    ],
)
def test_a_host_header_splits_into_a_host_and_a_port(
    value: str, expected: tuple[str, int | None] | None
) -> None:
    assert split_authority(value) == expected


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("http://localhost", "localhost:80", True),
        # A TLS proxy in front: the browser's origin is https, the Host has no port.
        ("https://rollwise.example", "rollwise.example", True),
        ("http://localhost:8080", "127.0.0.1:8080", False),
        ("http://127.0.0.1:3000", "127.0.0.1:8080", False),
        ("https://127.0.0.1", "127.0.0.1:80", False),
        ("null", "127.0.0.1:8080", False),
        ("file://", "127.0.0.1:8080", False),
        ("http://127.0.0.1:8080", None, False),
    ],
)
def test_same_origin_compares_host_and_port_with_the_scheme_s_default(
    origin: str, host: str | None, same: bool
) -> None:
    assert same_origin(origin, host) is same


@pytest.mark.parametrize(
    "host", ["localhost:8080", "127.0.0.1", "[::1]:8080", "app.localhost:1", "127.0.0.2:8", None]
)
def test_loopback_hosts_pass_under_insecure_dev(host: str | None) -> None:
    check_host(host, "127.0.0.1")


@pytest.mark.parametrize("host", ["evil.example:8080", "10.0.0.1", "localhost.evil.example"])
def test_other_hosts_are_refused_421_under_insecure_dev(host: str) -> None:
    with pytest.raises(Refusal) as refused:
        check_host(host, "127.0.0.1")
    assert refused.value.status == 421
    assert host in refused.value.message


def test_the_control_limit_is_one_mib_or_the_smaller_data_plane_limit() -> None:
    default = CONTROL_MAX_BODY_BYTES
    assert control_body_limit(default, 4 * 1024 * 1024) == default == 1024 * 1024
    assert control_body_limit(default, 64 * 1024) == 64 * 1024
    assert control_body_limit(2 * 1024 * 1024, 4 * 1024 * 1024) == 2 * 1024 * 1024


def call(
    tmp_path: Path,
    method: str,
    path: str,
    *,
    insecure_dev: bool = True,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    server: dict[str, Any] | None = None,
) -> httpx.Response:
    """One request to the control app of an unstarted gateway on 127.0.0.1:8080."""
    config = parse_config({**CONFIG, "server": server or {}}, base_dir=tmp_path)
    app = build_control_app(
        Gateway(config), Authenticator((), insecure_dev=insecure_dev), "127.0.0.1"
    )

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:8080"
        ) as client:
            return await client.request(method, path, content=content, headers=headers)

    return asyncio.run(main())


def test_a_same_origin_json_change_passes_the_guard(tmp_path: Path) -> None:
    response = call(
        tmp_path,
        "PUT",
        "/api/v1/models/echo/routing",
        content=UNCHECKED,
        headers={**JSON, "origin": "http://127.0.0.1:8080"},
    )
    # Past the guard: the route itself read the body and answers about its value.
    assert response.status_code == 422, response.text
    assert "weights.a" in response.json()["error"]


def test_a_foreign_origin_is_refused_403_before_the_route(tmp_path: Path) -> None:
    response = call(
        tmp_path,
        "PUT",
        "/api/v1/models/echo/routing",
        content=ROUTING,
        headers={**JSON, "origin": "http://evil.example"},
    )
    assert response.status_code == 403
    assert "Origin 'http://evil.example'" in response.json()["error"]


def test_a_cross_site_fetch_without_origin_is_refused_403(tmp_path: Path) -> None:
    response = call(
        tmp_path,
        "DELETE",
        "/api/v1/models/echo/versions/a",
        headers={"sec-fetch-site": "cross-site"},
    )
    assert response.status_code == 403
    assert "Sec-Fetch-Site" in response.json()["error"]


def test_a_foreign_origin_may_still_read(tmp_path: Path) -> None:
    # A cross-origin page cannot read the answer (no CORS headers), so reads pass.
    response = call(tmp_path, "GET", "/api/v1/whoami", headers={"origin": "http://evil.example"})
    assert response.status_code == 200, response.text


def test_a_foreign_host_is_refused_421(tmp_path: Path) -> None:
    response = call(tmp_path, "GET", "/api/v1/whoami", headers={"host": "rebind.example:8080"})
    assert response.status_code == 421
    assert "rebind.example" in response.json()["error"]


def test_with_tokens_any_host_passes_but_origin_and_type_are_checked(tmp_path: Path) -> None:
    # Behind a proxy under a public name: the name is fine, the token is what counts.
    named = call(
        tmp_path,
        "GET",
        "/api/v1/whoami",
        insecure_dev=False,
        headers={"host": "rollwise.example"},
    )
    assert named.status_code == 401
    foreign = call(
        tmp_path,
        "PUT",
        "/api/v1/models/echo/routing",
        insecure_dev=False,
        content=ROUTING,
        headers={**JSON, "origin": "http://evil.example"},
    )
    assert foreign.status_code == 403
    plain = call(
        tmp_path,
        "PUT",
        "/api/v1/models/echo/routing",
        insecure_dev=False,
        content=ROUTING,
        headers={"content-type": "text/plain"},
    )
    assert plain.status_code == 415


@pytest.mark.parametrize(
    "content_type", ["text/plain", "multipart/form-data; boundary=x", "application/jsonx"]
)
def test_a_body_that_is_not_json_is_refused_415(tmp_path: Path, content_type: str) -> None:
    response = call(
        tmp_path,
        "POST",
        "/api/v1/rollouts",
        content=b'{"model": "echo"}',
        headers={"content-type": content_type},
    )
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["error"]


def test_json_with_a_charset_is_json(tmp_path: Path) -> None:
    response = call(
        tmp_path,
        "PUT",
        "/api/v1/models/echo/routing",
        content=UNCHECKED,
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 422, response.text


def test_an_empty_body_needs_no_content_type(tmp_path: Path) -> None:
    # What Client.reload sends: a POST with no body at all.
    response = call(tmp_path, "POST", "/api/v1/models/nope/versions/a/reload")
    assert response.status_code == 404, response.text


def test_a_declared_body_over_the_limit_is_refused_413_naming_it(tmp_path: Path) -> None:
    response = call(
        tmp_path,
        "PUT",
        "/api/v1/models/echo/routing",
        content=b" " * 2000 + ROUTING,
        headers=JSON,
        server={"max_body_bytes": 1024},
    )
    assert response.status_code == 413
    assert "limit is 1024 bytes" in response.json()["error"]


def test_the_data_plane_and_metadata_routes_are_not_guarded(tmp_path: Path) -> None:
    response = call(tmp_path, "GET", "/v2/health/live", headers={"host": "rebind.example"})
    assert response.status_code == 200
