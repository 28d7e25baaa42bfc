"""Shadow calls of in-process models run in a pool of their own, which gives way to
served calls: they never take a served call's thread, start once no served call is in
flight, and hand the GIL back quickly while they run."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollwise.backends import executor as executor_module
from rollwise.backends.executor import (
    DEFAULT_SHADOW_THREADS,
    SHADOW_SWITCH_INTERVAL_S,
    SHADOW_THREADS_ENV,
    configure_executor,
    default_shadow_workers,
    enter_shadow_lane,
    get_shadow_executor,
    shutdown_executor,
)
from rollwise.backends.inprocess import InProcessBackend
from rollwise.errors import ConfigError


class ThreadNamer(InProcessBackend):
    """An in-process backend whose model code tells which thread ran it."""

    kind = "fake"

    def _load_model(self) -> None:
        pass

    async def thread_name(self, shadow: bool) -> str:
        if shadow:
            enter_shadow_lane()
        return await self._call(lambda: threading.current_thread().name)


@pytest.fixture(autouse=True)
def fresh_pools() -> Iterator[None]:
    shutdown_executor()
    yield
    shutdown_executor()


@pytest.mark.parametrize(
    ("shadow", "pool"),
    [
        pytest.param(False, "rollwise-model", id="a served call runs in the model pool"),
        pytest.param(True, "rollwise-shadow", id="a shadow call runs in the shadow pool"),
    ],
)
def test_each_call_takes_its_own_pool(tmp_path: Path, shadow: bool, pool: str) -> None:
    backend = ThreadNamer("v2", {}, tmp_path)

    async def call() -> str:
        # In a task of its own, as the gateway runs every shadow call.
        return await asyncio.create_task(backend.thread_name(shadow))

    assert asyncio.run(call()).startswith(pool)


def test_a_shadow_call_starts_once_no_served_call_is_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(executor_module, "SHADOW_YIELD_S", 30.0)
    served_pool = configure_executor(2)
    release = threading.Event()
    order: list[str] = []

    def served() -> None:
        release.wait(10)
        order.append("served")

    async def scenario() -> None:
        served_call = asyncio.ensure_future(served_pool.run(served))
        await asyncio.sleep(0)
        shadow_call = asyncio.ensure_future(
            get_shadow_executor().run(lambda: order.append("shadow"))
        )
        await asyncio.sleep(0.05)
        assert order == []  # held back while the served call runs
        release.set()
        await asyncio.gather(served_call, shadow_call)

    asyncio.run(scenario())
    assert order == ["served", "shadow"]


def test_the_gil_is_handed_over_quickly_while_shadow_code_runs() -> None:
    before = sys.getswitchinterval()
    during = asyncio.run(get_shadow_executor().run(sys.getswitchinterval))
    assert during == pytest.approx(min(before, SHADOW_SWITCH_INTERVAL_S))
    assert during < before
    assert sys.getswitchinterval() == pytest.approx(before)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, DEFAULT_SHADOW_THREADS, id="unset: the default"),
        pytest.param("3", 3, id="a positive integer"),
        pytest.param("0", ConfigError, id="zero is refused"),
        pytest.param("two", ConfigError, id="text is refused"),
    ],
)
def test_the_shadow_pool_size_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: int | type[Exception]
) -> None:
    if value is None:
        monkeypatch.delenv(SHADOW_THREADS_ENV, raising=False)
    else:
        monkeypatch.setenv(SHADOW_THREADS_ENV, value)
    if isinstance(expected, int):
        assert default_shadow_workers() == expected
    else:
        with pytest.raises(expected, match=SHADOW_THREADS_ENV):
            default_shadow_workers()
