"""Rollouts against a real gateway: its config, user traffic in the background, and
reading back phases, routing and events.

The gateway config gives each test its own model name (all pointing at the same
example model files), so that tests sharing one gateway process never see each
other's rollouts, routing or metrics.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import pytest
import yaml

from rollwise.client import Client
from rollwise.demo.traffic import TrafficGenerator, TrafficStats
from rollwise.example_models import CONFIG_NAME, write_example
from support.gateway import FEEDBACK, OPERATOR

ACTIVE_PHASES = ("pending", "progressing", "paused")

SERVER = {"flush_interval_s": 0.5, "routing_poll_interval_s": 0.5}
CONTROLLER = {"interval_s": 0.5, "settle_s": 1.0, "lease_ttl_s": 3}

RATE_PER_S = 140.0
"""Requests per second of the synthetic users: what two cores sustain with feedback."""
FEEDBACK_DELAY_S = (0.2, 1.0)


def example_versions(factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The iris example's versions (v1 sklearn, v2 onnx, v3 faulty python), with absolute
    paths. The models are trained once per test session, for every module that asks."""
    directory = factory.getbasetemp() / "rollout-example"
    path = directory / CONFIG_NAME
    # write_example writes the config last: when it is there, so are the models.
    if not path.exists():
        write_example(directory)
    config = yaml.safe_load(path.read_text())
    versions: dict[str, dict[str, Any]] = config["models"]["iris"]["versions"]
    for options in versions.values():
        if "path" in options:
            options["path"] = str(directory / options["path"])
    return versions


def rollout_config(
    versions: Mapping[str, Mapping[str, Any]],
    models: Mapping[str, Iterable[str] | Mapping[str, Mapping[str, Any]]],
    *,
    stable: str = "v1",
) -> dict[str, Any]:
    """A gateway config with short intervals: each model is a list of version names
    taken from ``versions``, or a mapping of its own versions."""
    section: dict[str, Any] = {}
    for name, chosen in models.items():
        own = (
            {v: dict(o) for v, o in chosen.items()}
            if isinstance(chosen, Mapping)
            else {v: dict(versions[v]) for v in chosen}
        )
        section[name] = {
            "sticky_key": "header:X-User-Id",
            "stable": stable,
            "task": "classification",
            "versions": own,
        }
    return {
        "store": "sqlite:///state.db",
        "server": dict(SERVER),
        "controller": dict(CONTROLLER),
        "models": section,
    }


def all_ready(client: Client) -> bool:
    return all(v["health"] == "ready" for m in client.models() for v in m["versions"])


class Traffic:
    """Synthetic users of one model in a background thread, with delayed labels.

    ``with Traffic(url, model) as traffic: ...``; ``traffic.live()`` is a snapshot of
    the counts so far and ``traffic.stats`` the final counts once the block ended.
    """

    def __init__(
        self,
        url: str,
        model: str,
        *,
        rate_per_s: float = RATE_PER_S,
        seed: int = 0,
        **options: Any,
    ) -> None:
        options.setdefault("feedback_delay_s", FEEDBACK_DELAY_S)
        # The gateways of the tests (support.gateway) take labels with a feedback token.
        options.setdefault("feedback_token", FEEDBACK)
        options.setdefault("users", 500)
        self.generator = TrafficGenerator(
            url, model, rate_per_s=rate_per_s, rng=random.Random(seed), **options
        )
        self._result: list[TrafficStats] = []
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name=f"traffic-{model}", daemon=True)

    def _run(self) -> None:
        async def main() -> TrafficStats:
            async with self.generator:
                return await self.generator.run()

        try:
            self._result.append(asyncio.run(main()))
        except BaseException as error:  # shown by __exit__
            self._errors.append(error)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.generator.stop()
        self._thread.join(timeout=30)
        if kind is None:
            assert not self._thread.is_alive(), "the traffic thread did not stop"
            assert not self._errors, f"the traffic thread failed: {self._errors[0]!r}"

    def live(self) -> TrafficStats:
        return self.generator.stats.snapshot()

    @property
    def stats(self) -> TrafficStats:
        assert self._result, "the traffic has not ended"
        return self._result[0]


def wait_until(
    client: Client, model: str, check: Any, what: str, timeout_s: float = 60.0
) -> dict[str, Any]:
    """Poll the model's latest rollout until ``check(rollout)`` holds; return it."""
    deadline = time.monotonic() + timeout_s
    rollout = client.rollout(model)
    while not check(rollout):
        if time.monotonic() > deadline:
            status = rollout["status"]
            raise AssertionError(
                f"{model}: {what} did not happen within {timeout_s:g} s; the rollout is "
                f"{status['phase']} at step {status['step_index']} ({status['message']})"
            )
        time.sleep(0.2)
        rollout = client.rollout(model)
    return rollout


def wait_until_ended(client: Client, model: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """The model's latest rollout once it has ended (promoted, rolled back, ...)."""
    return wait_until(
        client,
        model,
        lambda r: r["status"]["phase"] not in ACTIVE_PHASES,
        "the end of the rollout",
        timeout_s,
    )


def wait_for_step(
    client: Client, model: str, index: int, timeout_s: float = 60.0
) -> dict[str, Any]:
    """The model's latest rollout once it is at (or past) step ``index`` (0-based)."""
    return wait_until(
        client,
        model,
        lambda r: r["status"]["step_index"] >= index or r["status"]["phase"] not in ACTIVE_PHASES,
        f"step {index + 1}",
        timeout_s,
    )


@dataclass(frozen=True)
class RoutingView:
    """What the gateway reports for a model: its stable version, weights and mirrors
    (versions with none left out)."""

    stable: str
    weights: dict[str, int]
    mirrors: dict[str, int]


def routing_of(client: Client, model: str) -> RoutingView:
    info = client.model(model, window_s=5)
    return RoutingView(
        stable=info["stable"],
        weights={v["name"]: v["weight"] for v in info["versions"] if v["weight"]},
        mirrors={v["name"]: v["mirror"] for v in info["versions"] if v["mirror"]},
    )


def wait_for_routing(
    client: Client,
    model: str,
    stable: str,
    weights: Mapping[str, int],
    mirrors: Mapping[str, int] | None = None,
    timeout_s: float = 15.0,
) -> RoutingView:
    """The routing the gateway reports, once it is the expected one."""
    expected = RoutingView(stable, dict(weights), dict(mirrors or {}))
    deadline = time.monotonic() + timeout_s
    seen = routing_of(client, model)
    while seen != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"{model}: routing is {seen}, expected {expected}")
        time.sleep(0.1)
        seen = routing_of(client, model)
    return seen


def rollout_events(client: Client, model: str) -> list[dict[str, Any]]:
    """The model's rollout events (``rollout.*``), oldest first."""
    events = client.events(model, limit=1000)
    return [e for e in events if str(e["kind"]).startswith("rollout.")]


def kinds(events: Iterable[Mapping[str, Any]]) -> list[str]:
    return [str(e["kind"]) for e in events]


def served_by(
    url: str, model: str, n: int = 40, headers: Mapping[str, str] | None = None
) -> Counter[str]:
    """Which versions answered ``n`` requests from ``n`` different users (all must succeed)."""
    answered: Counter[str] = Counter()
    with httpx.Client(base_url=url, timeout=10) as http:
        for i in range(n):
            response = http.post(
                f"/models/{model}/predict",
                json={"inputs": [[5.1, 3.5, 1.4, 0.2]]},
                headers={"x-user-id": f"probe-{i}", **(headers or {})},
            )
            assert response.status_code == 200, response.text
            answered[response.headers["x-rollwise-version"]] += 1
    return answered


def operator_headers(version: str) -> dict[str, str]:
    """Headers of a preview request: the operator token and the forced version."""
    return {"authorization": f"Bearer {OPERATOR}", "x-rollwise-version": version}


ECHO_CONFIG: dict[str, Any] = {
    "store": "sqlite:///state.db",
    "server": {"flush_interval_s": 0.2, "routing_poll_interval_s": 0.2},
    "models": {
        "echo": {
            "stable": "a",
            "versions": {
                "a": {"backend": "fake", "label": 0},
                "b": {"backend": "fake", "label": 1},
            },
        }
    },
}
"""A gateway with one model, ``echo``, of two fake versions: ``a`` stable, ``b``."""

HELD_SPEC: dict[str, Any] = {
    "model": "echo",
    "candidate": "b",
    "strategy": "steps",
    "steps": [{"set_weight": 20}, {"pause": {}}, {"set_weight": 100}],
}
"""A rollout of ``b`` on ``ECHO_CONFIG`` that waits at its pause until a person promotes:
it stays in progress while a test looks."""
