"""The shadow host, seen from the gateway: a child process (``shadow_child``) that runs
the model code of in-process shadow versions, so that mirrored work never competes with
served requests for the gateway's interpreter.

In the gateway's own process a shadow's model code (scikit-learn, onnxruntime, a Python
callable) holds the GIL while it runs, and every served request waits for it in turn,
however the thread pools are arranged. Here each in-process shadow version is loaded a
second time, in one child process per gateway process, and mirrored requests are sent
to it over a socket pair that the gateway's event loop reads itself: no extra thread in
the gateway, a pickle of the request out and of the answer back (``shadow_wire``). The
operating system runs the child on another core while the gateway keeps its own, and,
since the child runs at the lowest priority (``SCHED_IDLE``, else nice 19), gives a
served request the core at once where the two share one. The time a hosted call reports
is the model's own, less its waits for a CPU in the child (``shadow_child``), so that a
busy machine does not make a shadow look slower than it is. The numeric libraries'
thread pools (OpenMP, BLAS) have one thread in the child unless their environment
variables say otherwise, so that a call's work stays in the thread whose waits are
counted (onnxruntime's pool is the version's ``intra_op_threads``, 1 by default).

``ShadowHost`` starts the child on first use and again on the first call after it died
(calls in flight then fail as the shadow's errors, never a served request's);
``send`` sends one request for a ``HostedModel`` and has a callback told its answer, with
no task, future or timer of its own (a connection's one watchdog catches a child that
stopped answering); ``predict`` awaits the same. A ``HostedModel`` names one backend object of
the gateway (``hosted_model``): a version reloaded or replaced is a new backend, so a
new model in the child, and ``forget`` unloads the old one there. ``prepare`` says
whether a model is loaded in the child and, when not, starts what is missing in the
background: the shadows send calls to the host only once it says yes, and meanwhile run
them in the gateway as before, so that starting the child and loading a model there (a
second or more) never drops mirrored requests, and a model the child cannot load (its
file changed on disk since the gateway loaded it) is still mirrored to, by the gateway's
own copy. What the child answers comes back as the answer or as the same kind of error
the backend would have raised in the gateway.

The cost: each hosted shadow version is in memory twice, and a call costs a few tens of
µs of the gateway's CPU to pickle and unpickle (``bench/shadows.py`` measures both rows).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import pickle
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

from rollwise.backends.base import Backend, InferenceRequest, InferenceResponse
from rollwise.backends.inprocess import DEFAULT_TIMEOUT_S, InProcessBackend
from rollwise.backends.shadow_wire import HostedModel, _frame, _Frames, _WireError, decode_error
from rollwise.errors import BackendError, BackendTimeout

__all__ = [
    "CLOSE_WAIT_S",
    "DELIVER_SLICE",
    "HOSTED_KINDS",
    "HOST_MARGIN_S",
    "RESTART_BACKOFF_S",
    "HostedModel",
    "Outcome",
    "ShadowHost",
    "ShadowProcessSetting",
    "hostable",
    "hosted_model",
    "shadow_process_enabled",
]

log = logging.getLogger("rollwise.shadow_host")

HOSTED_KINDS = frozenset({"sklearn", "onnx", "python"})
"""Backends whose model code runs in the shadow host. ``fake`` stays in the gateway: it
runs no model code (it sleeps), so a second process would only add a round trip."""

ShadowProcessSetting = Literal["auto", "on", "off"]

HOST_MARGIN_S = 5.0
"""How much longer than the version's own ``timeout_s`` the gateway waits for the child:
the child times the model out itself; this catches a child that stopped answering."""
RESTART_BACKOFF_S = 1.0
"""The shortest time between two starts of a child. A child that dies within
``SHORT_LIFE_S`` of its start (a model that crashes the interpreter as it loads) doubles
the wait before the next, up to ``MAX_RESTART_BACKOFF_S``, so it never becomes a loop
of process starts."""
MAX_RESTART_BACKOFF_S = 60.0
SHORT_LIFE_S = 10.0
CLOSE_WAIT_S = 5.0
"""How long ``close`` waits for the child to exit before killing it."""
DELIVER_SLICE = 4
"""Messages from the child read in one turn of the loop. The child answers in batches,
and each answer is recorded as it is read (a few tens of µs): a request that arrives
meanwhile waits for a slice, never for a whole batch."""

_tokens = itertools.count(1)


def shadow_process_enabled(setting: ShadowProcessSetting) -> bool:
    """Whether in-process shadows run in the shadow host: ``auto`` when the machine has
    more than one CPU (on one, the child could only take turns with the gateway)."""
    if setting == "auto":
        # The CPUs this process may run on (a container or taskset may allow fewer
        # than the machine has).
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
        return cpus > 1
    return setting == "on"


def hostable(backend: Backend) -> bool:
    """True for a backend whose model code the shadow host can run instead."""
    return isinstance(backend, InProcessBackend) and backend.kind in HOSTED_KINDS


def hosted_model(backend: InProcessBackend) -> HostedModel:
    """The ``HostedModel`` of one loaded backend (call once per backend object)."""
    options = dict(backend.options)
    timeout = options.get("timeout_s", DEFAULT_TIMEOUT_S)
    return HostedModel(
        token=next(_tokens),
        kind=backend.kind,
        name=backend.name,
        options=options,
        base_dir=str(backend.base_dir),
        artifact_sha256=backend.artifact_sha256,
        timeout_s=float(timeout) if isinstance(timeout, int | float) else DEFAULT_TIMEOUT_S,
    )


@dataclass(frozen=True, slots=True)
class TimedAnswer:
    """A hosted model's answer and the time its call took in the child, in ms: the
    version's latency, without the trip to the child and the time the call waited there
    for a CPU (where Linux tells it: else the child's wall time)."""

    response: InferenceResponse
    model_ms: float


Outcome = TimedAnswer | BaseException
"""How a call ended: its answer, or the error it raised (``CancelledError`` when the
caller gave it up: ``ShadowHost.abandon``)."""
Done = Callable[[Any, Outcome, float], None]
"""Told once how a call ended: its sender's context, the outcome, and the ms since it was
sent."""


@dataclass(slots=True)
class _Call:
    """A call sent to the child and not answered yet."""

    done: Done
    context: Any
    model: HostedModel
    sent_s: float
    deadline_s: float
    """When the gateway stops waiting: the model's ``timeout_s`` (which the child
    enforces itself) plus ``HOST_MARGIN_S``."""


def _tell(call: _Call, outcome: Outcome, now_s: float) -> None:
    try:
        call.done(call.context, outcome, (now_s - call.sent_s) * 1000.0)
    except Exception:
        # The sender's fault, not the child's: the connection goes on.
        log.exception("a shadow call's outcome could not be taken")


def _settle(future: asyncio.Future[TimedAnswer], outcome: Outcome, elapsed_ms: float) -> None:
    if future.done():  # the awaiting caller was cancelled
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class _Connection(asyncio.Protocol):
    """One running child, seen from the gateway's event loop."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.pending: dict[int, _Call] = {}
        self.introduced: set[int] = set()
        """Tokens of the models this child was told about (and is loading or holds)."""
        self.ready: set[int] = set()
        """Tokens of the models loaded in the child."""
        self.refused: set[int] = set()
        """Tokens of the models the child could not load."""
        self._ids = itertools.count(1)
        self._frames = _Frames()
        self._inbox: deque[bytes] = deque()
        """Messages from the child not read yet (``DELIVER_SLICE`` per turn)."""
        self._delivering = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._watch_at_s = 0.0
        """When the watchdog runs: the earliest deadline of the calls in flight."""
        self._out: list[bytes] = []
        """Frames for the child not written yet: written together at the end of this
        turn of the loop, so that the calls started in one turn cost one write (and the
        child one wake-up)."""
        self.started_s = time.monotonic()
        self.heard_s = self.started_s
        """When the child last sent anything."""

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio's classes: no isinstance here.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.heard_s = time.monotonic()
        try:
            bodies = self._frames.split(data)
        except Exception:
            log.exception("the shadow host sent an unreadable answer; restarting it")
            self.abort()
            return
        self._inbox.extend(bodies)
        if bodies and not self._delivering:
            self._delivering = True
            asyncio.get_running_loop().call_soon(self._deliver)

    def _deliver(self) -> None:
        inbox = self._inbox
        for _ in range(min(DELIVER_SLICE, len(inbox))):
            if not self._read(inbox.popleft()):
                return
        if inbox:
            asyncio.get_running_loop().call_soon(self._deliver)
        else:
            self._delivering = False

    def _read(self, body: bytes) -> bool:
        """Act on one message of the child; False when it is unreadable (the child is
        then aborted)."""
        try:
            status, number, payload = pickle.loads(body)
        except Exception:
            log.exception("the shadow host sent an unreadable answer; restarting it")
            self._inbox.clear()
            self._delivering = False
            self.abort()
            return False
        if status == "loaded":
            self._loaded(number, payload)
        elif status == "unloaded":
            self.ready.discard(number)
            self.introduced.discard(number)
        else:
            call = self.pending.pop(number, None)
            if call is not None:
                if status == "ok":
                    response, model_ms = payload
                    outcome: Outcome = TimedAnswer(response, float(model_ms))
                else:
                    outcome = decode_error(payload)
                _tell(call, outcome, time.monotonic())
        return True

    def _loaded(self, token: int, error: _WireError | None) -> None:
        if error is None:
            self.ready.add(token)
            return
        # Stays introduced: not tried again by this child, whose answer would be the
        # same; the gateway's own copy answers instead.
        self.refused.add(token)
        log.warning(
            "the shadow host cannot load a version (%s); its mirrored requests run in the "
            "gateway process instead",
            error[1],
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        # What the child answered before it went is still its answer.
        while self._inbox and self._read(self._inbox.popleft()):
            pass
        self._delivering = False
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        code = self.process.poll()
        how = "stopped" if code is None else f"exited with code {code}"
        self.give_up(lambda call: BackendError(f"the shadow host process {how} before it answered"))

    def give_up(self, error: Callable[[_Call], BaseException]) -> None:
        """End every call in flight with ``error(call)``."""
        calls, self.pending = self.pending, {}
        now_s = time.monotonic()
        for call in calls.values():
            _tell(call, error(call), now_s)

    # calls
    def send(self, model: HostedModel, request: InferenceRequest, done: Done, context: Any) -> None:
        """Send a call; ``done(context, outcome, elapsed_ms)`` is told once how it ended."""
        if self.closed or self.transport is None:
            raise BackendError("the shadow host process is not running", version=model.name)
        self.introduce(model)
        call_id = next(self._ids)
        # The body as received is for HTTP backends only: not worth pickling.
        sent = request if request.raw is None else replace(request, raw=None)
        frame = _frame(("predict", call_id, model.token, sent))
        now_s = time.monotonic()
        deadline_s = now_s + model.timeout_s + HOST_MARGIN_S
        self.pending[call_id] = _Call(done, context, model, now_s, deadline_s)
        self._write(frame)
        if self._watchdog is None or deadline_s < self._watch_at_s:
            self._watch_from(deadline_s)

    async def call(self, model: HostedModel, request: InferenceRequest) -> TimedAnswer:
        future: asyncio.Future[TimedAnswer] = asyncio.get_running_loop().create_future()
        self.send(model, request, _settle, future)
        return await future

    def _watch_from(self, at_s: float) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watch_at_s = at_s
        delay_s = max(0.0, at_s - time.monotonic())
        self._watchdog = asyncio.get_running_loop().call_later(delay_s, self._watch)

    def _watch(self) -> None:
        """End the calls past their deadline as timeouts; a child that has sent nothing
        since such a call was sent hangs (model code that never lets go, a CPU it never
        gets): it is aborted, and the next call starts a new one, instead of every call
        waiting out its timeout."""
        self._watchdog = None
        if self.closed:
            return
        now_s = time.monotonic()
        late = [(number, call) for number, call in self.pending.items() if call.deadline_s <= now_s]
        hung = False
        for number, call in late:
            del self.pending[number]
            hung = hung or self.heard_s < call.sent_s
            model = call.model
            timeout = BackendTimeout(
                f"version {model.name!r} did not answer within {model.timeout_s:g} s "
                "in the shadow host",
                version=model.name,
            )
            _tell(call, timeout, now_s)
        if hung:
            log.warning("the shadow host stopped answering; starting a new one")
            self.abort()
        elif self.pending:
            self._watch_from(min(call.deadline_s for call in self.pending.values()))

    def introduce(self, model: HostedModel) -> None:
        """Have the child load ``model``, unless it was told already."""
        if model.token not in self.introduced and self.transport is not None:
            self.introduced.add(model.token)
            self._write(_frame(("model", model)))

    def forget(self, model: HostedModel) -> None:
        self.ready.discard(model.token)
        self.refused.discard(model.token)
        if model.token in self.introduced and not self.closed and self.transport is not None:
            self.introduced.discard(model.token)
            self._write(_frame(("forget", model.token)))

    def _write(self, frame: bytes) -> None:
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(frame)

    def _flush(self) -> None:
        out, self._out = self._out, []
        transport = self.transport
        if out and transport is not None and not self.closed:
            transport.write(b"".join(out))

    def abort(self) -> None:
        # Closed from now on, not only once the loop reports the connection lost: the
        # next call must start a new child, not write to this one.
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()


class ShadowHost:
    """The gateway's handle on its shadow host process: started on first use, started
    again after it died, stopped by ``close``. Use it from one event loop."""

    def __init__(self) -> None:
        self._connection: _Connection | None = None
        self._starting: asyncio.Lock | None = None
        self._last_start_s = -RESTART_BACKOFF_S
        self._backoff_s = RESTART_BACKOFF_S
        self._warming: asyncio.Task[None] | None = None
        self.starts = 0
        """Child processes started so far."""

    @property
    def pid(self) -> int | None:
        """The running child's process id; None when none runs."""
        connection = self._connection
        if connection is None or connection.closed:
            return None
        return connection.process.pid

    async def predict(self, model: HostedModel, request: InferenceRequest) -> InferenceResponse:
        """``model``'s answer to ``request``, computed in the child."""
        return (await self.predict_timed(model, request)).response

    async def predict_timed(self, model: HostedModel, request: InferenceRequest) -> TimedAnswer:
        """``model``'s answer to ``request`` and the time the model took in the child."""
        connection = self._connection
        if connection is None or connection.closed:
            connection = await self._start()
        return await connection.call(model, request)

    def send(self, model: HostedModel, request: InferenceRequest, done: Done, context: Any) -> None:
        """Send ``request`` to ``model`` in the running child, without waiting:
        ``done(context, outcome, elapsed_ms)`` is told once, from the event loop, how it
        ended. For a model ``prepare`` just said yes to; ``BackendError`` (raised here)
        when no child runs."""
        connection = self._connection
        if connection is None or connection.closed:
            raise BackendError("the shadow host process is not running", version=model.name)
        connection.send(model, request, done, context)

    def abandon(self) -> None:
        """Give up every call in flight: each sender is told ``CancelledError``."""
        if self._connection is not None:
            self._connection.give_up(lambda call: asyncio.CancelledError())

    def prepare(self, model: HostedModel) -> bool:
        """True when ``model`` is loaded in the child, so that a call to it is answered
        at once; else start the child, or the model's load in it, in the background."""
        connection = self._connection
        if connection is not None and not connection.closed:
            if model.token in connection.ready:
                return True
            connection.introduce(model)
        elif self._warming is None or self._warming.done():
            self._warming = asyncio.get_running_loop().create_task(self._warm(model))
        return False

    async def _warm(self, model: HostedModel) -> None:
        try:
            connection = await self._start()
        except Exception:
            log.exception("the shadow host process could not be started")
            return
        connection.introduce(model)

    def refused(self, model: HostedModel) -> bool:
        """True when the child could not load ``model`` (a file changed on disk since the
        gateway loaded it, say): it will not load it later either."""
        connection = self._connection
        return (
            connection is not None and not connection.closed and model.token in connection.refused
        )

    def forget(self, model: HostedModel) -> None:
        """Unload ``model`` in the child (a version unloaded or replaced in the gateway);
        the calls already sent for it still finish."""
        if self._connection is not None:
            self._connection.forget(model)

    async def close(self) -> None:
        """Stop the child: it finishes nothing more, its calls in flight fail."""
        if self._warming is not None:
            self._warming.cancel()
        connection, self._connection = self._connection, None
        if connection is None:
            return
        process = connection.process
        if connection.transport is not None:
            connection.transport.close()
        else:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        try:
            # The child exits when it reads the end of its socket.
            await asyncio.to_thread(process.wait, CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:
            log.warning("the shadow host did not exit within %g s; killing it", CLOSE_WAIT_S)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.to_thread(process.wait)

    async def _start(self) -> _Connection:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            connection = self._connection
            if connection is not None and not connection.closed:
                return connection
            if connection is not None:
                log.warning(
                    "the shadow host process exited (code %s); starting a new one",
                    connection.process.poll(),
                )
                # Reaped off the loop: it is gone, or killed now.
                connection.abort()
                asyncio.get_running_loop().run_in_executor(None, connection.process.wait)
                lived_s = connection.heard_s - connection.started_s
                if lived_s < SHORT_LIFE_S:
                    self._backoff_s = min(self._backoff_s * 2, MAX_RESTART_BACKOFF_S)
                else:
                    self._backoff_s = RESTART_BACKOFF_S
            wait_s = self._last_start_s + self._backoff_s - time.monotonic()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            self._last_start_s = time.monotonic()
            self._connection = await self._spawn()
            self.starts += 1
            return self._connection

    async def _spawn(self) -> _Connection:
        ours, theirs = socket.socketpair()
        # Off the loop: starting a process takes milliseconds. The thread closes the
        # child's end once the child holds it, even when this start is given up (the
        # gateway stopping), so that its number is never reused for another socket
        # while the child may still inherit it; a child started anyway is killed.
        started = asyncio.ensure_future(asyncio.to_thread(_start_child, theirs))
        try:
            process = await asyncio.shield(started)
        except BaseException:
            ours.close()
            started.add_done_callback(_kill_unwanted)
            raise
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(lambda: _Connection(process), sock=ours)
        except BaseException:
            ours.close()
            process.kill()
            raise
        log.info("shadow host process %d started", process.pid)
        return connection


_ONE_THREAD = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
"""The numeric libraries' thread-pool sizes, 1 in the child unless set. A model that
hands its work to a pool blocks while the pool's threads wait for a CPU, and that wait,
in other threads, would count as the model's time; in a process of the lowest priority
their spinning between calls would also take what little CPU is left to it."""

_CHILD_CODE = (
    "import sys, json; sys.path[:0] = [p for p in json.loads(sys.argv[2]) if p not in sys.path]; "
    "from rollwise.backends.shadow_child import serve_child; serve_child(int(sys.argv[1]))"
)


def _kill_unwanted(started: asyncio.Future[subprocess.Popen[bytes]]) -> None:
    if started.cancelled() or started.exception() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        started.result().kill()


def _start_child(theirs: socket.socket) -> subprocess.Popen[bytes]:
    # The parent's import path goes along: a model's module may be importable only from
    # a folder the gateway added (tests, a bench script, ``python -c``). ``-P``: not the
    # working directory, where a stray json.py would run in the child.
    fd = theirs.fileno()
    try:
        return subprocess.Popen(
            [sys.executable, "-P", "-c", _CHILD_CODE, str(fd), json.dumps(sys.path)],
            pass_fds=(fd,),
            stdin=subprocess.DEVNULL,
            env={**dict.fromkeys(_ONE_THREAD, "1"), **os.environ},
        )
    finally:
        theirs.close()
