"""The shadow host's child process: it runs the model code of the gateway's in-process
shadow versions, answering the gateway (``shadow_host``) over its socket.

``serve_child`` builds each model from the same kind, options and folder as the gateway
did (``create_backend``), loads it once, and refuses to answer with a model file whose
sha256 differs from the one the gateway loaded. It keeps at most ``MAX_LOADED`` models,
unloads one unused for ``IDLE_UNLOAD_S``, and exits when the gateway closes the socket
or dies. Its answers go back in batches (``REPLY_EVERY_S``), as the gateway sends the
calls (``rollwise.runtime.shadows``).

It runs at the lowest priority the operating system allows (``SCHED_IDLE`` on Linux,
else nice 19), so that even on a core it shares with the gateway a served request gets
that core at once and the shadow only what is left. Its calls then wait for a CPU
whenever the machine is busy, and, held up together, wait for their turn behind one
another once the child runs again; neither is the model's time. Each call reports its
wall time less its waits for a CPU, as Linux counts them per thread (``schedstat``: the
model thread's while it runs the model, the event loop's and the model thread's on the
way in and out), and less the time it spent, outside its own run, while other calls'
model code ran (``net_model_ns`` is the arithmetic). The numeric libraries' thread
pools have one thread here (``shadow_host`` starts the child so), which keeps a model's
work in the thread that is timed. Where there is no ``schedstat`` a call reports its
wall time, and the child says so once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import pickle
import signal
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from rollwise.backends.base import Backend, InferenceRequest, InferenceResponse
from rollwise.backends.executor import ModelExecutor
from rollwise.backends.shadow_wire import _HEADER, HostedModel, _frame, encode_error
from rollwise.domain import VersionSpec
from rollwise.errors import BackendError, BackendLoadError

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger("rollwise.shadow_child")

MAX_LOADED = 16
"""Models the child holds at most; the least recently used one is unloaded beyond."""
IDLE_UNLOAD_S = 600.0
"""A model the child has not used for this long is unloaded (a shadow no longer
mirrored, a version promoted to serve): it is loaded again if it is mirrored again."""
REPLY_EVERY_S = 0.02
"""How long an answer waits at most to be written with the others: the answers go back
together once no call is left running (or ``REPLY_BATCH`` are waiting), so that the
gateway's event loop wakes once for a batch of calls rather than once per call; a slow
call holds the others' answers back this long at most. A call's latency is timed here,
so the wait is not counted in it."""
REPLY_BATCH = 32
"""Answers waiting that are written at once."""
LOAD_RETRY_S = 10.0
"""A model that failed to load in the child is tried again after this long, not on
every mirrored request."""


def serve_child(fd: int) -> None:
    """The child's main: answer the gateway on socket ``fd`` until it closes."""
    # First of all: the threads started from now on (the model threads, those of numpy,
    # onnxruntime or OpenMP) take the priority of the thread that starts them.
    priority = _lower_priority()
    # Ctrl-C in a terminal reaches the whole process group: the gateway decides when
    # its child stops (it closes the socket).
    # So do SIGTERM and SIGHUP sent to the group (systemd, a closed terminal): the
    # gateway drains first, then closes the socket.
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)
    # Processes the model code starts must not hold the socket: the gateway would never
    # see this process's end.
    os.set_inheritable(fd, False)
    logging.basicConfig(level=logging.WARNING, format="shadow host: %(levelname)s %(message)s")
    if priority is None:
        log.warning(
            "the operating system allows neither SCHED_IDLE nor nice 19: the shadow host "
            "runs at the gateway's priority and takes CPU time from served requests"
        )
    run_queue = RunQueue.open()
    if run_queue is None:
        log.warning(
            "no per-thread schedstat here (not Linux, or a kernel without it): a shadow's "
            "latency is its wall time in the shadow host, waits for a CPU included"
        )
    asyncio.run(_Child(socket.socket(fileno=fd), run_queue).run())
    # Model threads still running (a hung model) must not keep the process alive.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _lower_priority() -> str | None:
    """Put every thread of this process in the idle scheduling class, else at nice 19;
    the one taken, or None when the operating system allows neither.

    The idle class rather than nice 19: a nice-19 thread still gets about 1.5 % of a
    core against each busy thread of normal priority, and may run on past a served
    request's wake-up; an idle-class thread gives the core up as soon as anything else
    wants it, and Linux places a waking thread on a core running only idle-class ones
    as on an idle core. An unprivileged process may move itself into it.
    """
    try:
        threads = [int(name) for name in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]  # not Linux: 0 is this process
    ways: tuple[tuple[str, Callable[[int], None]], ...] = (
        ("SCHED_IDLE", lambda tid: os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))),
        ("nice 19", lambda tid: os.setpriority(os.PRIO_PROCESS, tid, 19)),
    )
    for name, lower in ways:
        try:
            for thread in threads:
                with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                    lower(thread)
        except (AttributeError, OSError):  # not on this OS, or not allowed here
            continue
        return name
    return None


# -- the model's own time --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelRun:
    """One run of model code in one of the child's model threads, as that thread read
    it; all times in ns."""

    wall: int
    """From the model code's start to its end."""
    waited: int
    """The thread's own wait on a run queue over the run."""
    woken: int
    """The thread's wait on a run queue since it finished its previous job: what getting
    a CPU to start this one took."""
    loop_waited: int
    """The wait on a run queue over the run of the child's event loop, which waited for
    the run meanwhile."""
    readings: int = 0
    """The time taken by these readings themselves, outside ``wall``."""


def net_model_ns(wall: int, loop_waited: int, runs: Sequence[ModelRun], running: int = 0) -> int:
    """The model's own time in a call that took ``wall`` ns: the wall time less what the
    call spent waiting, for a CPU or for its turn, never below 0.

    ``loop_waited`` is the run-queue wait over the whole call of the child's event loop,
    which made it; ``runs`` the model code the call ran in model threads (none for a
    model awaited on the loop itself); ``running`` how long, over the call, the model
    code of any call, this one's included, was running in the child's model threads.

    A run's own waits count whole. Outside the runs (the loop before the call goes out
    and once the answer is back, a model thread starting it) count the loop's and the
    model threads' waits, and the time other calls' model code ran, which the call
    waited behind for a model thread or for the interpreter. Never for more than the
    time spent outside the runs, though: a wait the loop sat in while a run went on did
    not hold the call up, a wait that began before the call is told in full when it
    ends, and other calls' model code may have run beside the call's rather than ahead
    of it. A model awaited on the loop ran beside the other calls' code: only the loop's
    waits count there.
    """
    in_runs = readings = waited = woken = loop_in_runs = 0
    for run in runs:
        in_runs += run.wall
        readings += run.readings
        waited += run.waited
        woken += run.woken
        loop_in_runs += run.loop_waited
    outside = max(0, wall - readings - in_runs)
    others = max(0, running - in_runs) if runs else 0
    held_outside = min(max(0, loop_waited - loop_in_runs) + woken + others, outside)
    return max(0, wall - readings - waited - held_outside)


_SCHEDSTAT = "/proc/thread-self/schedstat"
"""The calling thread's time on a CPU, time runnable but waiting for one (both in ns),
and timeslices."""


def _waited(fd: int) -> int:
    return int(os.pread(fd, 96, 0).split()[1])


class RunQueue:
    """How long the child's threads have waited on a run queue in all, from Linux's
    per-thread ``schedstat``.

    A thread reading its own total gets it exact. Another thread's total leaves out the
    wait that thread may be in right then, added when it gets a CPU. Each thread's file
    is opened once and read with ``pread``: about a µs, where an open costs several.
    """

    def __init__(self, loop_file: int) -> None:
        self._loop_file = loop_file
        self._files = threading.local()

    @classmethod
    def open(cls) -> RunQueue | None:
        """A reader for the calling thread (the event loop's) and those it starts, or
        None where there is no such file (not Linux, a kernel built without it) or it
        reads only zeros (a kernel not keeping the figures)."""
        try:
            fd = os.open(_SCHEDSTAT, os.O_RDONLY)
        except OSError:
            return None
        try:
            fields = [int(field) for field in os.pread(fd, 96, 0).split()]
        except (OSError, ValueError):
            fields = []
        # This thread has run (the interpreter started): a kernel keeping the figures
        # shows its time on a CPU and its timeslices.
        if len(fields) != 3 or not any(fields):
            os.close(fd)
            return None
        return cls(fd)

    def waited(self) -> int:
        """The calling thread's total wait on a run queue, in ns."""
        fd: int | None = getattr(self._files, "own", None)
        if fd is None:
            # Kept open for the thread's life: the model threads live as long as the child.
            fd = self._files.own = os.open(_SCHEDSTAT, os.O_RDONLY)
        return _waited(fd)

    def loop_waited(self) -> int:
        """The event loop thread's total wait on a run queue, in ns."""
        return _waited(self._loop_file)


_runs: ContextVar[list[ModelRun] | None] = ContextVar("rollwise_shadow_runs", default=None)
"""Where the model threads put the runs of model code made for the call the current
task answers; None outside a call (a load)."""


class _TimedPool(ModelExecutor):
    """The child's model threads: each job is timed in the thread that runs it, with the
    waits ``net_model_ns`` needs, and goes to the list of the call that sent it
    (``_runs``)."""

    def __init__(self, run_queue: RunQueue) -> None:
        super().__init__(thread_name_prefix="rollwise-shadow-host")
        self._run_queue = run_queue
        self._since = threading.local()
        """Per thread, its total wait on a run queue when it finished its previous job."""
        self._lock = threading.Lock()
        self._going = 0
        """Runs of model code going on."""
        self._running_ns = 0
        """How long at least one run went on, up to ``_changed_ns``."""
        self._changed_ns = 0

    def running_ns(self) -> int:
        """How long, in all, at least one run of model code went on in these threads,
        in ns (of ``time.perf_counter_ns``)."""
        with self._lock:
            return self._running(time.perf_counter_ns())

    def _running(self, now: int) -> int:
        return self._running_ns + (max(0, now - self._changed_ns) if self._going else 0)

    def _runs_change(self, now: int, change: int) -> None:
        with self._lock:
            self._running_ns = self._running(now)
            # A thread that read the clock before another took the lock is as late.
            self._changed_ns = max(now, self._changed_ns)
            self._going += change

    def _job(self, fn: Callable[P, T]) -> Callable[P, T]:
        # Read here, on the loop thread, in the task of the call: the job runs elsewhere.
        runs = _runs.get()

        @functools.wraps(fn)
        def timed(*args: P.args, **kwargs: P.kwargs) -> T:
            start = self._start() if runs is not None else None
            try:
                return fn(*args, **kwargs)
            finally:
                run = self._stop(start)
                if run is not None and runs is not None:
                    runs.append(run)

        return timed

    def _start(self) -> _Start | None:
        entered = time.perf_counter_ns()
        try:
            loop_waited = self._run_queue.loop_waited()
            waited = self._run_queue.waited()
        except (OSError, ValueError):  # never seen; it must not fail the call, only its timing
            return None
        started = time.perf_counter_ns()
        self._runs_change(started, +1)
        return _Start(entered, loop_waited, waited, started)

    def _stop(self, start: _Start | None) -> ModelRun | None:
        """The run that ``start`` began (None when untimed). For every job, untimed ones
        too (loads), the thread notes its total wait: its next job's wake-up counts
        from there."""
        ended = time.perf_counter_ns()
        if start is not None:
            self._runs_change(ended, -1)
        try:
            waited = self._run_queue.waited()
            loop_waited = self._run_queue.loop_waited() if start is not None else 0
        except (OSError, ValueError):
            return None
        previous: int = getattr(self._since, "waited", 0)
        self._since.waited = waited
        if start is None:
            return None
        return ModelRun(
            wall=ended - start.started,
            waited=waited - start.waited,
            woken=start.waited - previous,
            loop_waited=loop_waited - start.loop_waited,
            readings=start.started - start.entered + time.perf_counter_ns() - ended,
        )


@dataclass(frozen=True, slots=True)
class _Start:
    """What a model thread read as a run began (ns)."""

    entered: int
    loop_waited: int
    waited: int
    started: int


@dataclass
class _Entry:
    """A model in the child: loading, loaded, or failed to load."""

    model: HostedModel
    load: asyncio.Task[Backend]
    used_s: float
    in_flight: int = 0
    dropped: bool = False
    """Forgotten or evicted: closed once its calls in flight are done."""
    failed_s: float | None = field(default=None)


class _Child:
    def __init__(self, sock: socket.socket, run_queue: RunQueue | None) -> None:
        self.sock = sock
        self.run_queue = run_queue
        """None where the waits for a CPU cannot be read: calls report wall time."""
        # The models' own pool, not the process-wide one: its threads time what they run.
        self.pool = (
            _TimedPool(run_queue)
            if run_queue is not None
            else ModelExecutor(thread_name_prefix="rollwise-shadow-host")
        )
        self.models: dict[int, HostedModel] = {}
        self.entries: OrderedDict[int, _Entry] = OrderedDict()
        self.writer: asyncio.StreamWriter | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.calls = 0
        """Calls received and not answered yet."""
        self._out: list[bytes] = []
        """Answers not written yet (``REPLY_EVERY_S``)."""
        self._flush_timer: asyncio.TimerHandle | None = None
        self._flush_due = False

    async def run(self) -> None:
        reader, self.writer = await asyncio.open_connection(sock=self.sock)
        sweeper = asyncio.get_running_loop().create_task(self._sweep())
        try:
            while True:
                try:
                    header = await reader.readexactly(_HEADER.size)
                    (length,) = _HEADER.unpack(header)
                    body = await reader.readexactly(length)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the gateway closed the socket, or died
                self._dispatch(pickle.loads(body))
        finally:
            sweeper.cancel()
            for entry in list(self.entries.values()):
                await self._close(entry)

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "predict":
            _, call_id, token, request = message
            # The model and its entry are taken now, not when the task starts: a "forget"
            # read in the same burst must not fail a call sent before it.
            hosted = self.models.get(token)
            entry = None if hosted is None else self._entry(hosted)
            if entry is not None:
                entry.in_flight += 1
            self.calls += 1
            task = asyncio.get_running_loop().create_task(
                self._predict(call_id, hosted, entry, request)
            )
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif kind == "model":
            model: HostedModel = message[1]
            self.models[model.token] = model
            self._entry(model)
        elif kind == "forget":
            self.models.pop(message[1], None)
            entry = self.entries.pop(message[1], None)
            if entry is not None:
                self._drop(entry)

    async def _predict(
        self,
        call_id: int,
        model: HostedModel | None,
        entry: _Entry | None,
        request: InferenceRequest,
    ) -> None:
        name = model.name if model is not None else "?"
        try:
            if model is None or entry is None:
                raise BackendError("the shadow host was not told about this version")
            try:
                backend = await asyncio.shield(entry.load)
                response, model_ms = await self._timed(backend, request)
                reply: tuple[Any, ...] = ("ok", call_id, (response, model_ms))
            finally:
                entry.in_flight -= 1
                entry.used_s = time.monotonic()
                if entry.dropped and entry.in_flight == 0:
                    await self._close(entry)
        except Exception as error:
            reply = ("error", call_id, encode_error(error, name))
        self.calls -= 1
        self._send(reply, name)

    async def _timed(
        self, backend: Backend, request: InferenceRequest
    ) -> tuple[InferenceResponse, float]:
        """``backend``'s answer and the model's own time in ms: the call timed as the
        gateway times a version's call (the trip here and back is not the version's
        latency), less what it waited for a CPU or for its turn (``net_model_ns``)."""
        run_queue, pool = self.run_queue, self.pool
        if run_queue is None or not isinstance(pool, _TimedPool):
            started = time.perf_counter_ns()
            response = await backend.predict(request)
            return response, (time.perf_counter_ns() - started) / 1e6
        runs: list[ModelRun] = []
        _runs.set(runs)  # in this call's own task: its model threads add their runs
        waited, running = run_queue.waited(), pool.running_ns()
        started = time.perf_counter_ns()
        response = await backend.predict(request)
        wall = time.perf_counter_ns() - started
        waited, running = run_queue.waited() - waited, pool.running_ns() - running
        return response, net_model_ns(wall, waited, runs, running) / 1e6

    def _send(self, reply: tuple[Any, ...], name: str) -> None:
        assert self.writer is not None
        try:
            frame = _frame(reply)
        except Exception as error:  # an answer holding something pickle cannot carry
            frame = _frame(("error", reply[1], encode_error(error, name)))
        self._out.append(frame)
        loop = asyncio.get_running_loop()
        if self.calls == 0 or len(self._out) >= REPLY_BATCH:
            if not self._flush_due:
                self._flush_due = True
                loop.call_soon(self._flush)
        elif self._flush_timer is None:
            self._flush_timer = loop.call_later(REPLY_EVERY_S, self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        out, self._out = self._out, []
        assert self.writer is not None
        if out and not self.writer.is_closing():
            self.writer.write(b"".join(out))

    def _entry(self, model: HostedModel) -> _Entry:
        now = time.monotonic()
        entry = self.entries.get(model.token)
        if entry is not None and entry.failed_s is not None and now - entry.failed_s > LOAD_RETRY_S:
            del self.entries[model.token]
            entry = None
        if entry is None:
            task = asyncio.get_running_loop().create_task(self._load(model))
            entry = _Entry(model, task, now)
            task.add_done_callback(lambda done: self._loaded(entry, done))
            self.entries[model.token] = entry
            while len(self.entries) > MAX_LOADED:
                _, oldest = self.entries.popitem(last=False)
                self._drop(oldest)
        else:
            self.entries.move_to_end(model.token)
        return entry

    def _loaded(self, entry: _Entry, done: asyncio.Task[Backend]) -> None:
        if entry.dropped:
            return  # unloaded already, and the gateway told so: not "ready" again
        if done.cancelled():
            entry.failed_s = time.monotonic()
            return
        error = done.exception()
        if error is not None:
            entry.failed_s = time.monotonic()
        token, name = entry.model.token, entry.model.name
        wire = encode_error(error, name) if isinstance(error, Exception) else None
        self._send(("loaded", token, wire), name)

    async def _load(self, model: HostedModel) -> Backend:
        from rollwise.backends.registry import create_backend

        spec = VersionSpec(model.name, model.kind, model.options)
        backend = create_backend(spec, Path(model.base_dir), executor=self.pool)
        try:
            await backend.load()
            found = backend.artifact_sha256
            if model.artifact_sha256 and found != model.artifact_sha256:
                raise BackendLoadError(
                    f"version {model.name!r}: its model file changed since the gateway loaded "
                    f"it (sha256 {found}, the gateway's {model.artifact_sha256}); reload the "
                    "version to mirror to the new file",
                    version=model.name,
                )
        except BaseException:
            with contextlib.suppress(Exception):
                await backend.close()
            raise
        return backend

    def _drop(self, entry: _Entry) -> None:
        # The gateway runs the calls in its own process until the model is back.
        self._send(("unloaded", entry.model.token, None), entry.model.name)
        entry.dropped = True
        if entry.in_flight == 0:
            task = asyncio.get_running_loop().create_task(self._close(entry))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    @staticmethod
    async def _close(entry: _Entry) -> None:
        if not entry.load.done():
            entry.load.cancel()
            return
        if entry.load.cancelled() or entry.load.exception() is not None:
            return
        with contextlib.suppress(Exception):
            await entry.load.result().close()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(IDLE_UNLOAD_S / 10)
            now = time.monotonic()
            for token, entry in list(self.entries.items()):
                if entry.in_flight == 0 and now - entry.used_s > IDLE_UNLOAD_S:
                    del self.entries[token]
                    self._drop(entry)
