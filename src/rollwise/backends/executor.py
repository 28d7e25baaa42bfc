"""The bounded thread pools that in-process models run in, two per process.

Model code (scikit-learn, onnxruntime, user callables) is synchronous and may hold a
thread for milliseconds or seconds, so it never runs on the event loop. All in-process
backends share one pool for the answers users wait for: its size caps how many model
calls run at once, and ``max_pending`` caps how many may wait, so that an overloaded
gateway refuses quickly with ``BackendUnavailable`` instead of queueing without limit.

Calls made for shadows (mirrored requests, see ``rollwise.runtime.shadows``) go to a
second, small pool instead, so that a shadow never holds a thread a served call could
use. That pool gives way to the served one: a shadow call starts only once no served
call is in flight (or after ``SHADOW_YIELD_S``), and while shadow model code runs the
interpreter hands the GIL back to waiting threads within ``SHADOW_SWITCH_INTERVAL_S``
instead of Python's default 5 ms, so that the event loop, which must read every new
request, never waits long behind a shadow. Which pool a call takes is decided by the
caller's context (``enter_shadow_lane``), so backends need no extra argument.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

from rollwise.errors import BackendUnavailable, ConfigError

P = ParamSpec("P")
T = TypeVar("T")

THREADS_ENV = "ROLLWISE_BACKEND_THREADS"
"""Environment variable that sets the default pool size."""
SHADOW_THREADS_ENV = "ROLLWISE_SHADOW_THREADS"
"""Environment variable that sets the size of the shadows' pool."""
DEFAULT_SHADOW_THREADS = 2
"""Shadow threads by default: one shadow version holds at most one (all but one, as for
served calls), so two shadows progress side by side and one takes a single core."""
SHADOW_YIELD_S = 0.05
"""How long a shadow call waits for the served pool to fall idle before it starts
anyway: under sustained served load shadows still progress, slowly, and the mirrors
beyond what they can take are dropped and counted."""
SHADOW_SWITCH_INTERVAL_S = 0.0002
"""The interpreter's switch interval while shadow model code runs: how long a thread
that wants the GIL (the event loop with a new request, a served call) waits at most
before the shadow's thread must hand it over. Python's default, 5 ms, is what a
pure-Python shadow otherwise adds to the served latency."""

_shadow_lane: ContextVar[bool] = ContextVar("rollwise_shadow_lane", default=False)


def enter_shadow_lane() -> None:
    """Model calls made from now on in this context (an asyncio task's own copy of it)
    are shadow calls, run in the shadows' pool."""
    _shadow_lane.set(True)


def in_shadow_lane() -> bool:
    """True in a context that ``enter_shadow_lane`` marked."""
    return _shadow_lane.get()


def _threads_from_env(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: must be a positive integer") from None
    if value < 1:
        raise ConfigError(f"{name}={raw!r}: must be a positive integer")
    return value


def default_workers() -> int:
    """Pool size from ``ROLLWISE_BACKEND_THREADS``, else the CPU count (at least 8)."""
    configured = _threads_from_env(THREADS_ENV)
    if configured is not None:
        return configured
    # At least 8: every version may hold all threads but one (see InProcessBackend), and
    # small models spend much of a call outside the GIL (numpy, onnxruntime), so a few
    # threads per core keep the cores busy; bench/gateway.py row (d) measures it.
    return max(8, os.cpu_count() or 1)


def default_shadow_workers() -> int:
    """Shadow pool size from ``ROLLWISE_SHADOW_THREADS``, else ``DEFAULT_SHADOW_THREADS``."""
    configured = _threads_from_env(SHADOW_THREADS_ENV)
    return DEFAULT_SHADOW_THREADS if configured is None else configured


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
        self._idle = threading.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        """Calls submitted and not yet finished."""
        return self._in_flight

    def wait_idle(self, timeout_s: float) -> bool:
        """Block the calling thread until no call is in flight, at most ``timeout_s``;
        True if the pool was idle by then."""
        return self._idle.wait(timeout_s)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Start ``fn`` in the pool, or raise ``BackendUnavailable`` when the pool is full."""
        if not self._slots.acquire(blocking=False):
            raise BackendUnavailable(
                f"the model thread pool is saturated ({self.max_pending} calls in flight on "
                f"{self.max_workers} threads); retry later"
            )
        with self._count_lock:
            self._in_flight += 1
            if self._in_flight == 1:
                self._idle.clear()
        try:
            future = self._pool.submit(self._job(fn), *args, **kwargs)
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

    def _job(self, fn: Callable[P, T]) -> Callable[P, T]:
        """What a pool thread runs for ``fn``: ``fn`` itself here."""
        return fn

    def _release(self) -> None:
        with self._count_lock:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
        self._slots.release()


class ShadowExecutor(ModelExecutor):
    """The shadows' pool: it gives way to the served pool (``served``, looked up per
    call, since that pool may be replaced at start-up) and shortens the interpreter's
    switch interval while its model code runs."""

    def __init__(
        self, served: Callable[[], ModelExecutor | None], max_workers: int | None = None
    ) -> None:
        workers = default_shadow_workers() if max_workers is None else max_workers
        super().__init__(workers, thread_name_prefix="rollwise-shadow")
        self._served = served
        self._running = 0
        self._running_lock = threading.Lock()
        self._saved_interval_s = sys.getswitchinterval()

    def _job(self, fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def after_served(*args: P.args, **kwargs: P.kwargs) -> T:
            served = self._served()
            if served is not None:
                served.wait_idle(SHADOW_YIELD_S)
            self._started()
            try:
                return fn(*args, **kwargs)
            finally:
                self._finished()

        return after_served

    def _started(self) -> None:
        with self._running_lock:
            # Shortened only while shadow code runs: without shadows, served threads
            # keep Python's interval and switch among themselves less often.
            if self._running == 0:
                self._saved_interval_s = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved_interval_s, SHADOW_SWITCH_INTERVAL_S))
            self._running += 1

    def _finished(self) -> None:
        with self._running_lock:
            self._running -= 1
            if self._running == 0:
                sys.setswitchinterval(self._saved_interval_s)


_lock = threading.Lock()
_shared: ModelExecutor | None = None
_shadow: ShadowExecutor | None = None


def get_executor() -> ModelExecutor:
    """The process-wide pool, created on first use with the default size."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = ModelExecutor()
        return _shared


def get_shadow_executor() -> ShadowExecutor:
    """The process-wide shadows' pool, created on first use."""
    global _shadow
    with _lock:
        if _shadow is None:
            _shadow = ShadowExecutor(_served_now)
        return _shadow


def _served_now() -> ModelExecutor | None:
    """The process-wide pool as it is, without creating one."""
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
    """Stop the process-wide pools; the next ``get_executor`` (``get_shadow_executor``)
    creates a new one."""
    global _shared, _shadow
    with _lock:
        previous, _shared = _shared, None
        shadow, _shadow = _shadow, None
    for pool in (previous, shadow):
        if pool is not None:
            pool.shutdown(wait=wait)
