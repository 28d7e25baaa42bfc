"""The bounded thread pool that in-process models run in, one per process.

Model code (scikit-learn, onnxruntime, user callables) is synchronous and may hold a
thread for milliseconds or seconds, so it never runs on the event loop. All in-process
backends share one pool: its size caps how many model calls run at once, and
``max_pending`` caps how many may wait, so that an overloaded gateway refuses quickly
with ``BackendUnavailable`` instead of queueing without limit.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from rollwise.errors import BackendUnavailable, ConfigError

P = ParamSpec("P")
T = TypeVar("T")

THREADS_ENV = "ROLLWISE_BACKEND_THREADS"
"""Environment variable that sets the default pool size."""


def default_workers() -> int:
    """Pool size from ``ROLLWISE_BACKEND_THREADS``, else the CPU count (at least 8)."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{THREADS_ENV}={raw!r}: must be a positive integer") from None
        if value < 1:
            raise ConfigError(f"{THREADS_ENV}={raw!r}: must be a positive integer")
        return value
    # At least 8: every version may hold all threads but one (see InProcessBackend), and
    # small models spend much of a call outside the GIL (numpy, onnxruntime), so a few
    # threads per core keep the cores busy; bench/gateway.py row (d) measures it.
    return max(8, os.cpu_count() or 1)


class ModelExecutor:
    """A fixed-size thread pool with a cap on calls in flight (running plus waiting)."""

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        max_pending: int | None = None,
        thread_name_prefix: str = "rollwise-model",
    ) -> None:
        workers = default_workers() if max_workers is None else max_workers
        if workers < 1:
            raise ConfigError(f"backend thread pool size must be at least 1, got {workers}")
        pending = workers * 64 if max_pending is None else max_pending
        if pending < 1:
            raise ConfigError(f"backend max_pending must be at least 1, got {pending}")
        self.max_workers = workers
        self.max_pending = pending
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=thread_name_prefix)
        self._slots = threading.BoundedSemaphore(pending)
        self._in_flight = 0
        self._count_lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """Calls submitted and not yet finished."""
        return self._in_flight

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Start ``fn`` in the pool, or raise ``BackendUnavailable`` when the pool is full."""
        if not self._slots.acquire(blocking=False):
            raise BackendUnavailable(
                f"the model thread pool is saturated ({self.max_pending} calls in flight on "
                f"{self.max_workers} threads); retry later"
            )
        with self._count_lock:
            self._in_flight += 1
        try:
            future = self._pool.submit(fn, *args, **kwargs)
        except BaseException:
            self._release()
            raise
        # Released when the thread finishes, not when the awaiting task is cancelled:
        # a cancelled request still occupies its thread until the model returns.
        future.add_done_callback(lambda _: self._release())
        return future

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` in the pool and await its result."""
        future = self.submit(functools.partial(fn, *args, **kwargs))
        return await asyncio.wrap_future(future)

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop taking calls; calls already submitted still run to completion."""
        self._pool.shutdown(wait=wait)

    def _release(self) -> None:
        with self._count_lock:
            self._in_flight -= 1
        self._slots.release()


_lock = threading.Lock()
_shared: ModelExecutor | None = None


def get_executor() -> ModelExecutor:
    """The process-wide pool, created on first use with the default size."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = ModelExecutor()
        return _shared


def configure_executor(
    max_workers: int | None = None, *, max_pending: int | None = None
) -> ModelExecutor:
    """Replace the process-wide pool (call once at start-up, before models load).

    Calls already running in the previous pool finish there; new calls use the new one.
    """
    global _shared
    fresh = ModelExecutor(max_workers, max_pending=max_pending)
    with _lock:
        previous, _shared = _shared, fresh
    if previous is not None:
        previous.shutdown(wait=False)
    return fresh


def shutdown_executor(*, wait: bool = True) -> None:
    """Stop the process-wide pool; the next ``get_executor`` creates a new one."""
    global _shared
    with _lock:
        previous, _shared = _shared, None
    if previous is not None:
        previous.shutdown(wait=wait)
