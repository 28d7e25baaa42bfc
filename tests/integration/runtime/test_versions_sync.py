"""A replica's loaded versions follow the desired set in the background: added ones load
while the others serve, changed ones are swapped in only once ready, removed ones stop
getting requests at once. Real (fake-kind) backends on a real event loop."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from rollwise.config import parse_config
from rollwise.domain import VersionHealth, VersionSource, VersionSpec
from rollwise.runtime.context import Context
from rollwise.runtime.versions import Versions

CONFIG = {"models": {"m": {"stable": "a", "versions": {"a": {"backend": "fake"}}}}}


def fake(name: str, **options: object) -> VersionSpec:
    return VersionSpec(name, "fake", dict(options), VersionSource.API)


def make(tmp_path: Path) -> tuple[Versions, list[str]]:
    config = parse_config(CONFIG, base_dir=tmp_path, environ={})
    ctx = Context(config, store=None, clock=lambda: 0.0, rng=random.Random(0), replica="r")
    changes: list[str] = []
    versions = Versions(ctx, on_change=lambda: changes.append("change"))
    return versions, changes


async def settle(versions: Versions, *keys: tuple[str, str]) -> None:
    for _ in range(200):
        if all(versions.state(*key).health is not VersionHealth.LOADING for key in keys):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("versions never finished loading")


def test_an_added_version_loads_in_the_background_and_a_removed_one_goes(tmp_path: Path) -> None:
    async def main() -> None:
        versions, changes = make(tmp_path)
        a, b = ("m", "a"), ("m", "b")
        await versions.load_all({a: fake("a", label=0)})
        assert versions.ready_versions("m") == {"a"}
        versions.sync({a: fake("a", label=0), b: fake("b", label=1, load_latency_ms=100)})
        # Not ready yet, and nothing waited for it: the call returned at once.
        assert versions.state(*b).health is VersionHealth.LOADING
        assert versions.ready_versions("m") == {"a"}
        await settle(versions, b)
        assert versions.ready_versions("m") == {"a", "b"}
        versions.sync({b: fake("b", label=1, load_latency_ms=100)})
        assert versions.ready_versions("m") == {"b"}
        assert a not in versions.backends
        assert changes, "the routing was never told"
        await versions.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("new_options", "health", "label"),
    [
        pytest.param(
            {"label": 5}, VersionHealth.READY, 5, id="a new spec that loads is swapped in"
        ),
        pytest.param(
            {"label": 5, "fail_load": "corrupt"},
            VersionHealth.READY,
            1,
            id="a new spec that fails leaves the old one serving",
        ),
    ],
)
def test_a_changed_spec_replaces_the_old_backend_only_once_ready(
    tmp_path: Path, new_options: dict[str, object], health: VersionHealth, label: int
) -> None:
    async def main() -> None:
        versions, _ = make(tmp_path)
        key = ("m", "a")
        await versions.load_all({key: fake("a", label=1)})
        old = versions.backends[key]
        versions.sync({key: fake("a", **new_options)})
        # The old backend answers while the new one loads.
        assert versions.backends[key] is old
        for _ in range(200):
            if not versions._busy:
                break
            await asyncio.sleep(0.01)
        assert versions.state(*key).health is health
        served = versions.backends[key]
        assert served.options.get("label") == label
        await versions.close()

    asyncio.run(main())


def test_a_version_that_fails_to_load_says_why(tmp_path: Path) -> None:
    async def main() -> None:
        versions, _ = make(tmp_path)
        key = ("m", "x")
        versions.sync({key: fake("x", fail_load="weights file is corrupt")})
        await settle(versions, key)
        state = versions.state(*key)
        assert state.health is VersionHealth.FAILED
        assert "weights file is corrupt" in state.reason
        ready, why = versions.readiness(*key)
        assert not ready and "failed" in why
        await versions.close()

    asyncio.run(main())


def test_sticky_users_are_counted_by_a_fixed_size_hash_not_their_keys(tmp_path: Path) -> None:
    from rollwise.domain import Role
    from rollwise.runtime.routing_state import RoutingState
    from rollwise.runtime.serving import Serving
    from rollwise.runtime.telemetry import Telemetry

    data = {
        "models": {
            "m": {
                "stable": "a",
                "sticky_key": "header:X-User-Id",
                "versions": {"a": {"backend": "fake"}},
            }
        }
    }

    async def main() -> None:
        config = parse_config(data, base_dir=tmp_path, environ={})
        ctx = Context(config, store=None, clock=lambda: 0.0, rng=random.Random(0), replica="r")
        versions = Versions(ctx)
        await versions.load_all({("m", "a"): config.models["m"].versions["a"]})
        routing = RoutingState(ctx, versions)
        routing.rebuild()
        telemetry = Telemetry(ctx)
        serving = Serving(ctx, versions, routing, telemetry)
        long_keys = [f"{i:08d}" + "x" * 60_000 for i in range(50)]
        for key in [*long_keys, *long_keys]:
            serving.choose("m", key, None)
        seen = routing.users_seen["m"]
        assert len(seen) == 50
        assert all(isinstance(user, int) for user in seen)
        assert telemetry.metrics.window("m", "a", Role.SERVED).users == 50
        await versions.close()

    asyncio.run(main())
