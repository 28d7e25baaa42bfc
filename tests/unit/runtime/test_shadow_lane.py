"""Mirrored requests leave the request path: offering one only queues it, whatever the
loop already has waiting runs before any shadow work, and the runner records the
answers (metrics, comparison, prediction log) afterwards. A shadow holds a bounded
number of them and drops, and counts, the rest."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from rollwise.backends.base import InferenceRequest, InferenceResponse, Tensor
from rollwise.config import parse_config
from rollwise.domain import Role, Routing
from rollwise.errors import BackendError, BackendTimeout, RequestRejected
from rollwise.metrics.recorder import VersionWindow
from rollwise.routing.table import build_table
from rollwise.runtime.context import Context
from rollwise.runtime.shadows import START_BATCH, START_EVERY_S, Shadows
from rollwise.runtime.telemetry import Telemetry

LIMIT = 3
REQUEST = InferenceRequest((Tensor("x", (1, 4), "FP64", [5.1, 3.5, 1.4, 0.2]),))


def answer(label: int) -> InferenceResponse:
    return InferenceResponse((Tensor("label", (1,), "INT64", [label]),))


class Shadow:
    """A shadow version's backend: answers ``result`` (or raises it), after ``gate``."""

    def __init__(self, log: list[str], name: str, result: int | Exception = 1) -> None:
        self.log = log
        self.name = name
        self.result = result
        self.gate: asyncio.Future[None] | None = None

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        self.log.append(f"{self.name} predicts")
        if self.gate is not None:
            await self.gate
        if isinstance(self.result, Exception):
            raise self.result
        return answer(self.result)


class Loaded:
    """The part of ``Versions`` the shadows read: the loaded backends."""

    def __init__(self, backends: dict[tuple[str, str], Shadow]) -> None:
        self.backends = backends


def lane(tmp_path: Path, *shadows: Shadow, limit: int = LIMIT) -> tuple[Shadows, Telemetry, Any]:
    versions = {"v1": {"backend": "fake"}} | {s.name: {"backend": "fake"} for s in shadows}
    config = parse_config(
        {
            "server": {"mirror_concurrency": limit},
            "models": {"iris": {"stable": "v1", "versions": versions}},
        },
        base_dir=tmp_path,
        environ={},
    )
    ctx = Context(config, store=None, clock=lambda: 1000.0, rng=random.Random(0), replica="r")
    telemetry = Telemetry(ctx)
    loaded = Loaded({("iris", s.name): s for s in shadows})
    routing = Routing("iris", "v1", {"v1": 100}, {s.name: 100 for s in shadows})
    table = build_table(routing, {"v1", *(s.name for s in shadows)}, None)
    return Shadows(ctx, loaded, telemetry), telemetry, table  # type: ignore[arg-type]


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=5))


async def until(condition: Callable[[], bool], turns: int = 1000) -> None:
    """Let the loop turn until ``condition()`` holds: the queued calls start within
    ``START_EVERY_S``, so the turns are spread over a few of those."""
    pause_s = 4 * START_EVERY_S / turns
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(pause_s)
    raise AssertionError("the condition never held")


async def settled(shadows: Shadows) -> None:
    await until(lambda: shadows.held == 0)


def shadow_window(telemetry: Telemetry, version: str = "v2") -> VersionWindow:
    return telemetry.metrics.window("iris", version, Role.SHADOW)


def test_offering_only_queues_and_waiting_requests_go_first(tmp_path: Path) -> None:
    log: list[str] = []
    shadows, telemetry, table = lane(tmp_path, Shadow(log, "v2"))

    async def scenario() -> None:
        shadows.offer(table, REQUEST, "r1", answer(1))
        assert log == [] and shadows.held == 1
        assert shadow_window(telemetry).requests == 0
        # A request that reached the loop meanwhile is handled before the shadow starts.
        asyncio.get_running_loop().call_soon(log.append, "next request")
        await settled(shadows)

    run(scenario)
    assert log == ["next request", "v2 predicts"]
    window = shadow_window(telemetry)
    assert (window.requests, window.compared, window.agreed, window.dropped) == (1, 1, 1, 0)


@pytest.mark.parametrize(
    ("offers", "started_at_once"),
    [
        pytest.param(3, False, id="a few calls wait for the batch's timer"),
        pytest.param(START_BATCH, True, id="a full batch starts at once"),
    ],
)
def test_calls_start_together(tmp_path: Path, offers: int, started_at_once: bool) -> None:
    log: list[str] = []
    shadows, telemetry, table = lane(tmp_path, Shadow(log, "v2"), limit=4 * START_BATCH)
    started: list[int] = []

    async def scenario() -> None:
        for number in range(offers):
            shadows.offer(table, REQUEST, f"r{number}", answer(1))
        for _ in range(10):
            await asyncio.sleep(0)
        started.append(len(log))
        await settled(shadows)

    run(scenario)
    # All or none: the calls of the requests offered meanwhile start in one turn.
    assert started == [offers if started_at_once else 0]
    assert shadow_window(telemetry).requests == offers


@pytest.mark.parametrize(
    ("served", "result", "expected"),
    [
        pytest.param(
            answer(1),
            1,
            {"requests": 1, "compared": 1, "agreed": 1, "logged": 1},
            id="the same answer agrees and is logged",
        ),
        pytest.param(
            answer(0),
            1,
            {"requests": 1, "compared": 1, "agreed": 0, "logged": 1},
            id="another answer disagrees",
        ),
        pytest.param(
            None,
            1,
            {"requests": 1, "compared": 0, "agreed": 0, "logged": 1},
            id="nothing to compare with when the served version failed",
        ),
        pytest.param(
            answer(1),
            BackendError("boom"),
            {"requests": 1, "errors": 1},
            id="a failure counts against the shadow",
        ),
        pytest.param(
            answer(1),
            BackendTimeout("late"),
            {"requests": 1, "errors": 1, "timeouts": 1},
            id="a timeout is a failure and a timeout",
        ),
        pytest.param(
            answer(1),
            RequestRejected("bad input", version="v2"),
            {"requests": 1, "client_errors": 1},
            id="a refusal is the caller's error",
        ),
    ],
)
def test_the_runner_records_what_the_shadow_did(
    tmp_path: Path,
    served: InferenceResponse | None,
    result: int | Exception,
    expected: dict[str, int],
) -> None:
    shadows, telemetry, table = lane(tmp_path, Shadow([], "v2", result))

    async def scenario() -> None:
        shadows.offer(table, REQUEST, "r1", served)
        await settled(shadows)

    run(scenario)
    window = shadow_window(telemetry)
    figures = {
        "requests": window.requests,
        "errors": window.errors,
        "timeouts": window.timeouts,
        "client_errors": window.client_errors,
        "compared": window.compared,
        "agreed": window.agreed,
        "logged": len(telemetry.predictions.recent("r1") or []),
    }
    assert figures == {name: expected.get(name, 0) for name in figures}
    if expected.get("logged"):
        (record,) = telemetry.predictions.recent("r1") or []
        assert (record.version, record.role, record.outputs) == ("v2", Role.SHADOW, [1])


@pytest.mark.parametrize(
    ("offers", "dropped"),
    [
        pytest.param(LIMIT, 0, id="up to the bound every request is held"),
        pytest.param(LIMIT + 2, 2, id="beyond it the rest are dropped and counted"),
    ],
)
def test_a_busy_shadow_drops_its_own_requests_only(
    tmp_path: Path, offers: int, dropped: int
) -> None:
    log: list[str] = []
    slow, quick = Shadow(log, "v2"), Shadow(log, "v3")
    shadows, telemetry, table = lane(tmp_path, slow, quick)

    async def scenario() -> None:
        slow.gate = asyncio.get_running_loop().create_future()
        for number in range(offers):
            shadows.offer(table, REQUEST, f"r{number}", answer(1))
            await asyncio.sleep(0)
        await until(lambda: shadow_window(telemetry, "v3").requests == offers)
        assert shadow_window(telemetry, "v2").dropped == dropped
        slow.gate.set_result(None)
        await settled(shadows)

    run(scenario)
    assert shadow_window(telemetry, "v2").requests == offers - dropped
    assert shadow_window(telemetry, "v3").dropped == 0


def test_a_stop_drops_and_counts_what_the_shadows_still_hold(tmp_path: Path) -> None:
    log: list[str] = []
    shadow = Shadow(log, "v2")
    shadows, telemetry, table = lane(tmp_path, shadow)

    async def scenario() -> None:
        shadow.gate = asyncio.get_running_loop().create_future()
        shadows.offer(table, REQUEST, "running", answer(1))
        await until(lambda: bool(log))
        shadows.offer(table, REQUEST, "queued", answer(1))
        await shadows.drain(timeout_s=0)
        await asyncio.sleep(0)

    run(scenario)
    assert shadows.held == 0
    window = shadow_window(telemetry)
    assert (window.requests, window.dropped) == (0, 2)


def test_a_shadow_unloaded_before_its_turn_drops_the_request(tmp_path: Path) -> None:
    shadows, telemetry, table = lane(tmp_path, Shadow([], "v2"))

    async def scenario() -> None:
        shadows.offer(table, REQUEST, "r1", answer(1))
        shadows.versions.backends.clear()
        await settled(shadows)

    run(scenario)
    window = shadow_window(telemetry)
    assert (window.requests, window.dropped) == (0, 1)
