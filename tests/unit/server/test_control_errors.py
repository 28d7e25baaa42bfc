"""A bug in a control API route is logged with its traceback and answered 500 in JSON.

The gateway is built but not started; the parts a route calls are swapped for ones
that raise, since no real input should make rollwise itself fail.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollwise.config import parse_config
from rollwise.runtime.gateway import Gateway
from rollwise.server.auth import Authenticator
from rollwise.server.control import build_control_app

CONFIG = {
    "store": "sqlite:///state.db",
    "models": {"echo": {"stable": "a", "versions": {"a": {"backend": "fake", "label": 0}}}},
}


class Broken:
    """Stands in for the gateway's rollouts: every call fails as a bug would."""

    def list(self, *args: Any, **kwargs: Any) -> Any:
        raise KeyError("phase")


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    return Gateway(parse_config(CONFIG, base_dir=tmp_path))


def get(gateway: Gateway, path: str) -> httpx.Response:
    app = build_control_app(gateway, Authenticator((), insecure_dev=True))

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.get(path)

    return asyncio.run(main())


def test_a_control_route_that_fails_is_logged_and_answered_in_json(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    async def version_metrics(name: str, window_s: float) -> dict[str, Any]:
        raise ZeroDivisionError("division by zero")

    gateway.telemetry.version_metrics = version_metrics  # type: ignore[method-assign,assignment]
    with caplog.at_level(logging.ERROR, logger="rollwise.server"):
        response = get(gateway, "/api/v1/models/echo")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error: ZeroDivisionError: division by zero"}
    [record] = [r for r in caplog.records if r.name == "rollwise.server"]
    assert "GET /api/v1/models/echo" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError


def test_a_rollout_route_that_fails_is_logged_and_answered_in_json(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway._rollouts = Broken()  # type: ignore[assignment]
    with caplog.at_level(logging.ERROR, logger="rollwise.server"):
        response = get(gateway, "/api/v1/rollouts")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error: KeyError: 'phase'"}
    assert any(
        r.name == "rollwise.server" and r.exc_info is not None and r.exc_info[0] is KeyError
        for r in caplog.records
    )


def test_refusals_keep_their_status(gateway: Gateway) -> None:
    response = get(gateway, "/api/v1/models/nope")
    assert response.status_code == 404
    assert "nope" in response.json()["error"]
