"""A web page cannot drive the control API of a gateway under ``--insecure-dev``, and
no control body may exceed its limit.

One real gateway process with fake versions only (so it starts in a second) runs
without tokens on loopback, as ``rollwise serve --insecure-dev`` does on a laptop
where a browser is open too. Every refused request must leave the model as it was:
no rollout is started by any of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from rollwise.client import Client
from rollwise.server.guard import CONTROL_MAX_BODY_BYTES
from support.cli import rollwise
from support.gateway import GatewayProcess, eventually
from support.rollouts import ECHO_CONFIG, HELD_SPEC


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("guard"), ECHO_CONFIG, insecure_dev=True)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def active_rollouts(gateway: GatewayProcess) -> list[dict[str, Any]]:
    with gateway.client(token=None) as client:
        response = client.get("/api/v1/rollouts", params={"active": "true"})
    assert response.status_code == 200, response.text
    return list(response.json()["rollouts"])


def post_rollout(gateway: GatewayProcess, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{gateway.url}/api/v1/rollouts", content=body, headers=headers, timeout=30)


def test_the_cross_site_post_from_the_issue_starts_no_rollout(gateway: GatewayProcess) -> None:
    # What a page on evil.example whose name was rebound to 127.0.0.1 would send.
    response = post_rollout(
        gateway,
        orjson.dumps(HELD_SPEC),
        {
            "content-type": "text/plain",
            "origin": "http://evil.example",
            "host": f"evil.example:{gateway.port}",
        },
    )
    assert response.status_code == 421, response.text
    assert "evil.example" in response.json()["error"]
    assert active_rollouts(gateway) == []


def test_a_foreign_host_is_refused_even_for_reads(gateway: GatewayProcess) -> None:
    rebound = httpx.get(
        f"{gateway.url}/api/v1/models", headers={"host": f"rebind.example:{gateway.port}"}
    )
    assert rebound.status_code == 421, rebound.text
    assert "loopback" in rebound.json()["error"]
    # Loopback names are this server, whatever the port.
    local = httpx.get(f"{gateway.url}/api/v1/models", headers={"host": f"localhost:{gateway.port}"})
    assert local.status_code == 200, local.text


@pytest.mark.parametrize(
    "origin",
    ["http://evil.example", "http://localhost:1", "null", "https://127.0.0.1"],
    ids=["another site", "another port", "opaque origin", "another scheme"],
)
def test_a_change_with_a_foreign_origin_is_refused_403(
    gateway: GatewayProcess, origin: str
) -> None:
    # The Host is the server's own: only the Origin gives the page away.
    response = post_rollout(
        gateway, orjson.dumps(HELD_SPEC), {"content-type": "application/json", "origin": origin}
    )
    assert response.status_code == 403, response.text
    assert "Origin" in response.json()["error"]
    routing = httpx.put(
        f"{gateway.url}/api/v1/models/echo/routing",
        json={"weights": {"a": 0, "b": 100}},
        headers={"origin": origin},
    )
    assert routing.status_code == 403, routing.text
    assert active_rollouts(gateway) == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_declared_json_is_refused_415(
    gateway: GatewayProcess, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = post_rollout(gateway, orjson.dumps(HELD_SPEC), headers)
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["error"]
    assert active_rollouts(gateway) == []


def test_an_over_limit_body_is_refused_413_and_starts_no_rollout(gateway: GatewayProcess) -> None:
    spec = {**HELD_SPEC, "description": "x" * (CONTROL_MAX_BODY_BYTES + 1)}
    declared = post_rollout(gateway, orjson.dumps(spec), {"content-type": "application/json"})
    assert declared.status_code == 413, declared.text
    assert str(CONTROL_MAX_BODY_BYTES) in declared.json()["error"]

    # Without a Content-Length (chunked), the body is counted as it is read.
    body = orjson.dumps(spec)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    streamed = httpx.post(
        f"{gateway.url}/api/v1/rollouts",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert streamed.status_code == 413, streamed.text
    assert str(CONTROL_MAX_BODY_BYTES) in streamed.json()["error"]
    assert active_rollouts(gateway) == []


def test_same_origin_json_the_client_and_the_cli_still_work(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    # A page served by the gateway itself (same origin) may still check a spec.
    checked = httpx.post(
        f"{gateway.url}/api/v1/rollouts",
        params={"dry_run": "true"},
        json=HELD_SPEC,
        headers={"origin": gateway.url},
    )
    assert checked.status_code == 200, checked.text
    assert checked.json()["dry_run"] is True

    env = {"ROLLWISE_URL": gateway.url, "ROLLWISE_TOKEN": ""}
    spec_file = tmp_path / "rollout.yaml"
    spec_file.write_text(yaml.safe_dump(HELD_SPEC))
    applied = rollwise("apply", "-f", str(spec_file), env=env)
    assert applied.returncode == 0, applied.stderr
    [rollout] = active_rollouts(gateway)
    assert rollout["spec"]["candidate"] == "b"

    with Client(gateway.url, token="") as client:
        # A bare POST, no body at all, and the commands with their small JSON bodies.
        assert client.reload("echo", "a")["health"] == "ready"
        assert client.pause("echo")["status"]["phase"] == "paused"
        assert client.resume("echo")["status"]["phase"] in ("progressing", "paused")
    # The CLI's promote with no reason: the pause step lets go and the rollout ends.
    promoted = rollwise("promote", "echo", env=env)
    assert promoted.returncode == 0, promoted.stderr
    eventually(lambda: active_rollouts(gateway) == [])
    with Client(gateway.url, token="") as client:
        assert client.rollout("echo")["status"]["phase"] == "promoted"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({"origin": "https://evil.example"}, 403, id="a foreign Origin"),
        pytest.param({"sec-fetch-site": "cross-site"}, 403, id="a cross-site fetch"),
        pytest.param({}, 200, id="a client that is not a browser"),
    ],
)
def test_ground_truth_without_a_token_is_not_taken_from_another_site(
    gateway: GatewayProcess, headers: dict[str, str], status: int
) -> None:
    answer = httpx.post(f"{gateway.url}/models/echo/predict", json={"inputs": [[1.0]]})
    request_id = answer.headers["x-request-id"]
    posted = httpx.post(
        f"{gateway.url}/models/echo/feedback",
        json={"request_id": request_id, "label": 0},
        headers=headers,
    )
    assert posted.status_code == status, posted.text
    if status == 403:
        assert "ground truth" in posted.json()["error"]
        # Nothing was stored: the same label from a plain client is still taken.
        again = httpx.post(
            f"{gateway.url}/models/echo/feedback", json={"request_id": request_id, "label": 0}
        )
        assert again.status_code == 200, again.text
