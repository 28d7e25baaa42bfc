"""Versions that disagree on their interface: a rollout to a candidate that would break
the stable version's callers is refused with the differences unless its spec allows
it; such a candidate still loads, with an event; and ``GET /v2/models/{m}`` describes
the version each caller is routed to.

A gateway started in-process on a SQLite store (controller off), with fake versions
whose outputs differ, spoken to over ``httpx.ASGITransport``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from rollwise.config import parse_config
from rollwise.domain import Event
from rollwise.runtime.gateway import Gateway
from rollwise.server.auth import Authenticator
from rollwise.server.control import build_control_app
from rollwise.server.dataplane import DataPlane

CONFIG = {
    "store": "sqlite:///state.db",
    "controller": {"enabled": False},
    "models": {
        "m": {
            "sticky_key": "header:X-User-Id",
            "stable": "a",
            "versions": {
                "a": {"backend": "fake", "label": 0},
                # Another interface: "predict" where "a" answers "label".
                "b": {"backend": "fake", "outputs": {"predict": 1}},
                "c": {"backend": "fake", "label": 2},
            },
        }
    },
}
OIP_BODY = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]}

Scenario = Callable[[Gateway, httpx.AsyncClient], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario) -> None:
    async def main() -> None:
        gateway = Gateway(parse_config(CONFIG, base_dir=tmp_path, environ={}))
        auth = Authenticator((), insecure_dev=True)
        app = DataPlane(gateway, auth, build_control_app(gateway, auth))
        await gateway.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
                await scenario(gateway, c)
        finally:
            await gateway.stop()

    asyncio.run(main())


def canary(candidate: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "candidate": candidate,
        "strategy": "canary",
        "canary": {"weights": [50], "pause_s": None},
        **extra,
    }


async def events(gateway: Gateway, kind: str) -> list[Event]:
    found = await gateway.db(gateway.store.list_events, "m", 0, 1000)
    return [e for e in found if e.kind == kind]


def test_a_rollout_that_breaks_callers_is_refused_with_the_differences_unless_allowed(
    tmp_path: Path,
) -> None:
    async def scenario(gateway: Gateway, client: httpx.AsyncClient) -> None:
        for dry_run in ("true", "false"):
            refused = await client.post(
                "/api/v1/rollouts", json=canary("b"), params={"dry_run": dry_run}
            )
            assert refused.status_code == 409, refused.text
            message = refused.json()["error"]
            assert "output 'label' removed (was INT64 [-1]) — breaking" in message
            assert "output 'predict' added (INT64 [-1])" in message
            assert "allow_interface_change: true" in message
        assert (await client.get("/api/v1/rollouts")).json()["rollouts"] == []
        # A candidate with the stable's interface needs nothing more.
        same = await client.post("/api/v1/rollouts", json=canary("c"), params={"dry_run": "true"})
        assert same.status_code == 200, same.text

        allowed = await client.post(
            "/api/v1/rollouts", json=canary("b", allow_interface_change=True)
        )
        assert allowed.status_code == 201, allowed.text
        assert allowed.json()["candidate"] == "b"
        [event] = await events(gateway, "rollout.interface_change_allowed")
        assert "output 'label' removed" in event.message
        assert event.data["breaking"] is True
        assert event.data["rollout"] == allowed.json()["id"]

    run(tmp_path, scenario)


def test_a_candidate_with_another_interface_loads_and_is_recorded_once(tmp_path: Path) -> None:
    async def scenario(gateway: Gateway, client: httpx.AsyncClient) -> None:
        for _ in range(100):
            if await events(gateway, "version.interface_changed"):
                break
            await asyncio.sleep(0.02)
        [event] = await events(gateway, "version.interface_changed")
        assert event.data["version"] == "b" and event.data["stable"] == "a"
        assert "output 'label' removed" in event.message
        assert (await client.get("/v2/models/m/versions/b/ready")).status_code == 200
        # Loaded anew, the same change is not recorded twice.
        reloaded = await client.post("/api/v1/models/m/versions/b/reload")
        assert reloaded.status_code == 200, reloaded.text
        await asyncio.sleep(0.1)
        assert len(await events(gateway, "version.interface_changed")) == 1

    run(tmp_path, scenario)


def test_model_metadata_describes_the_version_the_caller_is_routed_to(tmp_path: Path) -> None:
    async def scenario(gateway: Gateway, client: httpx.AsyncClient) -> None:
        routed = await client.put("/api/v1/models/m/routing", json={"weights": {"a": 50, "b": 50}})
        assert routed.status_code == 200, routed.text
        outputs = {"a": ["label"], "b": ["predict"]}
        seen = set()
        for n in range(24):
            user = {"X-User-Id": f"user-{n}"}
            meta = await client.get("/v2/models/m", headers=user)
            inferred = await client.post("/v2/models/m/infer", json=OIP_BODY, headers=user)
            assert meta.status_code == inferred.status_code == 200, (meta.text, inferred.text)
            version = meta.headers["x-rollwise-version"]
            # The version described is the one that answers this user's requests,
            # and its outputs are the ones the answer carries.
            assert version == inferred.headers["x-rollwise-version"]
            assert meta.json()["version"] == version
            assert [o["name"] for o in meta.json()["outputs"]] == outputs[version]
            assert [o["name"] for o in inferred.json()["outputs"]] == outputs[version]
            seen.add(version)
        assert seen == {"a", "b"}
        one = await client.get("/v2/models/m/versions/b")
        assert one.headers["x-rollwise-version"] == "b"
        assert [o["name"] for o in one.json()["outputs"]] == ["predict"]

    run(tmp_path, scenario)
