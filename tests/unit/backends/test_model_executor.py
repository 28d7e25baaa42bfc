"""The process-wide model thread pool: its size, its bound and its replacement."""

from __future__ import annotations

import asyncio
import threading

import pytest

from rollwise.backends.executor import (
    THREADS_ENV,
    ModelExecutor,
    configure_executor,
    default_workers,
    get_executor,
    shutdown_executor,
)
from rollwise.errors import ConfigError


def test_run_returns_the_result_from_a_pool_thread() -> None:
    executor = ModelExecutor(2)
    try:
        name = asyncio.run(executor.run(lambda: threading.current_thread().name))
    finally:
        executor.shutdown()
    assert name.startswith("rollwise-model")
    assert executor.in_flight == 0


def test_exceptions_reach_the_caller_and_free_the_slot() -> None:
    executor = ModelExecutor(1, max_pending=1)

    def boom() -> None:
        raise KeyError("nope")

    try:
        with pytest.raises(KeyError):
            asyncio.run(executor.run(boom))
        assert asyncio.run(executor.run(lambda: 42)) == 42
    finally:
        executor.shutdown()


@pytest.mark.parametrize(("workers", "pending"), [(0, None), (1, 0)])
def test_sizes_below_one_are_refused(workers: int, pending: int | None) -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        ModelExecutor(workers, max_pending=pending)


def test_the_default_size_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(THREADS_ENV, "3")
    assert default_workers() == 3
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(ConfigError, match=f"{THREADS_ENV}='many'"):
        default_workers()
    monkeypatch.delenv(THREADS_ENV)
    assert default_workers() >= 8


def test_configure_replaces_the_shared_pool() -> None:
    try:
        configured = configure_executor(3, max_pending=5)
        assert get_executor() is configured
        assert (configured.max_workers, configured.max_pending) == (3, 5)
        shutdown_executor()
        fresh = get_executor()
        assert fresh is not configured
        assert fresh is get_executor()
    finally:
        shutdown_executor()
