"""The supervisor of ``rollwise serve --workers N``: one listening socket, N workers.

It binds the port and loads no models. Each worker is a ``rollwise serve`` process that
serves on the inherited socket and is a replica of the fleet like any other gateway:
it heartbeats, flushes its metrics to the store, and runs a controller that acts only
while it holds the store's lease. All workers accept from the socket's one queue, so a
worker that stops, or dies, leaves the connections still queued to the others. (With
SO_REUSEPORT each process would own a queue of its own, and closing it resets the
connections waiting in it: that is why the socket is shared instead.)

- SIGTERM or SIGINT: passed on to every worker, which finishes what it serves and
  stops; a second one is passed on too (the workers then stop without waiting).
- SIGHUP (or a worker's request, below): a rolling restart. The config is read again
  (refused whole if it is bad); then slot by slot a new worker starts, and the old one
  is stopped only once the new one is ready, so the port never stops answering. A new
  worker that dies before it is ready aborts the restart and the old workers keep
  serving.
- A worker that dies is restarted after a backoff (``worker_policy``), with an event.

A worker's readiness, and its requests for a rolling restart (a SIGHUP it got, or
``POST /api/v1/config/reload`` answered by it), come over its link (``worker_process``),
since a health check or a request on the shared port could reach any worker.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rollwise.config import GatewayConfig, load_config
from rollwise.errors import ConfigError, RollwiseError
from rollwise.server.supervisor_events import SupervisorEvents
from rollwise.server.worker import HANGUP, READY
from rollwise.server.worker_policy import (
    Phase,
    RestartPolicy,
    RollAction,
    WorkersSetting,
    describe_exit,
    restart_after_death,
    roll_action,
    workers_for,
)
from rollwise.server.worker_process import WorkerCommand, WorkerProcess, cpus, listen_socket
from rollwise.store import open_store
from rollwise.store.engine import parse_store_url

log = logging.getLogger("rollwise.supervisor")

STOP_MARGIN_S = 30.0
"""A worker told to stop has ``server.shutdown_timeout_s`` for its requests in flight,
and this much more for its flush and its goodbye to the fleet, before it is killed."""

TICK_S = 0.5
"""The longest the supervisor sleeps: how late it may notice an exit its link missed."""


@dataclass(eq=False)
class _Slot:
    """One of the N places a worker serves in; its worker is replaced, the slot stays."""

    worker: WorkerProcess | None = None
    failures: int = 0
    restart_at_s: float | None = None


@dataclass(eq=False)
class _Roll:
    """A rolling restart in progress: the slots left, and the one being replaced."""

    left: deque[int]
    keep: int
    slot: int | None = None
    new: WorkerProcess | None = None
    old: WorkerProcess | None = None
    replaced: int = 0


class Supervisor:
    """Runs the workers of one gateway until SIGTERM or SIGINT."""

    _listener: socket.socket
    _events: SupervisorEvents

    def __init__(
        self,
        *,
        config_path: Path,
        config: GatewayConfig,
        host: str,
        port: int,
        command: WorkerCommand,
        workers: WorkersSetting | None = None,
        policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.host = host
        self.port = port
        self.command = command
        # From the command line: it wins over the config, also when a SIGHUP reads it.
        self.workers_option = workers
        self.policy = policy or RestartPolicy()
        self.clock = clock
        self._slots: list[_Slot] = []
        self._workers: list[WorkerProcess] = []
        self._roll: _Roll | None = None
        self._booting = True
        self._hangup_pending = False
        self._stopping = False
        self._failure = ""
        self._selector = selectors.DefaultSelector()

    def count(self, config: GatewayConfig) -> int:
        return workers_for(self.workers_option or config.server.workers, cpus())

    # the process's life ---------------------------------------------------------------
    def run(self) -> None:
        """Bind, start the workers, supervise them until stopped; ``RollwiseError`` if
        the port cannot be bound or a first worker dies before it is ready."""
        if parse_store_url(self.config.store_url).in_memory:
            raise ConfigError(
                "workers share their state through the store, and an in-memory SQLite "
                "store is each process's own: use a file (sqlite:///rollwise.db) or PostgreSQL"
            )
        self._listener = listener = listen_socket(self.host, self.port)
        self.port = listener.getsockname()[1]
        try:
            store = open_store(self.config.store_url)
        except BaseException:
            listener.close()
            raise
        self._events = SupervisorEvents(store, time.time)
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self._selector.register(wake_r, selectors.EVENT_READ, None)
        previous_fd = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        # The handlers do nothing: the wake-up descriptor carries the signal's number.
        handlers = {
            number: signal.signal(number, lambda *_: None)
            for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        try:
            # Once here, rather than by every worker at once.
            store.migrate()
            self._start(self.count(self.config))
            while self._workers or not self._stopping:
                for key, _ in self._selector.select(self._timeout_s()):
                    if key.data is None:
                        self._take_signals(wake_r)
                    else:
                        self._read(key.data)
                self._tick()
        finally:
            signal.set_wakeup_fd(previous_fd)
            for number, handler in handlers.items():
                signal.signal(number, handler)
            for worker in self._workers:
                # Only when the loop itself failed: a worker whose link ends stops
                # as if sent SIGTERM, finishing what it serves.
                worker.link.close()
            self._selector.close()
            wake_r.close()
            wake_w.close()
            listener.close()
            self._events.close()
        if self._failure:
            raise RollwiseError(f"the gateway failed to start: {self._failure}")
        log.info("every worker has stopped")

    def _start(self, count: int) -> None:
        log.info(
            "listening on http://%s:%d; starting %d workers (supervisor pid %d)",
            self.host,
            self.port,
            count,
            os.getpid(),
        )
        self._slots = [_Slot() for _ in range(count)]
        for index, slot in enumerate(self._slots):
            slot.worker = self._spawn(index)
            if slot.worker is None:
                self._fail(f"worker {index} could not be started")
                return

    def _tick(self) -> None:
        self._reap()
        now = self.clock()
        for worker in self._workers:
            if worker.stop_by_s is not None and now > worker.stop_by_s:
                log.warning("%s did not stop in time; killing it", worker.describe())
                worker.stop_by_s = None
                worker.process.kill()
        if self._stopping:
            return
        self._advance_roll()
        for index, slot in enumerate(self._slots):
            if slot.worker is None and slot.restart_at_s is not None and now >= slot.restart_at_s:
                slot.restart_at_s = None
                slot.worker = self._spawn(index)
                if slot.worker is None:
                    self._died(index, None)

    def _timeout_s(self) -> float:
        if any(not w.link_open for w in self._workers):
            # Its link ended: the process is exiting, and is reaped within moments.
            return 0.02
        due = [s.restart_at_s for s in self._slots if s.restart_at_s is not None]
        if not due or self._stopping:
            return TICK_S
        return max(0.0, min(TICK_S, min(due) - self.clock()))

    # workers --------------------------------------------------------------------------
    def _spawn(self, slot: int) -> WorkerProcess | None:
        worker = WorkerProcess.start(slot, self.command, self._listener)
        if worker is not None:
            self._selector.register(worker.link, selectors.EVENT_READ, worker)
            self._workers.append(worker)
        return worker

    def _read(self, worker: WorkerProcess) -> None:
        lines = worker.read_lines()
        if lines is None:
            self._selector.unregister(worker.link)
            return
        for line in lines:
            word, _, rest = line.partition(b" ")
            if word == READY:
                self._ready(worker, rest.decode("ascii", "replace"))
            elif word == HANGUP:
                log.info(
                    "%s asks for a rolling restart (SIGHUP or a config reload)",
                    worker.describe(),
                )
                self._hangup()

    def _ready(self, worker: WorkerProcess, replica: str) -> None:
        worker.replica = replica
        if worker.phase is not Phase.STARTING:
            return
        worker.phase = Phase.READY
        worker.ready_s = self.clock()
        log.info("%s is ready", worker.describe())
        if self._booting and all(
            s.worker is not None and s.worker.phase is Phase.READY for s in self._slots
        ):
            self._booting = False
            log.info("all %d workers are ready", len(self._slots))
            if self._hangup_pending:
                self._hangup()

    def _stop_worker(self, worker: WorkerProcess, number: int = signal.SIGTERM) -> None:
        if worker.phase is not Phase.GONE:
            worker.phase = Phase.STOPPING
        if worker.stop_by_s is None:
            worker.stop_by_s = self.clock() + self.config.server.shutdown_timeout_s + STOP_MARGIN_S
        worker.signal(number)

    def _reap(self) -> None:
        for worker in list(self._workers):
            returncode = worker.process.poll()
            if returncode is None:
                continue
            self._workers.remove(worker)
            if worker.link_open:
                self._selector.unregister(worker.link)
            worker.link.close()
            expected = worker.phase is Phase.STOPPING
            worker.phase = Phase.GONE
            if expected:
                log.info("%s stopped (%s)", worker.describe(), describe_exit(returncode))
            elif self._booting:
                self._fail(f"{worker.describe()} {describe_exit(returncode)} before it was ready")
            else:
                self._died(worker.slot, worker, returncode)

    def _died(
        self, index: int, worker: WorkerProcess | None, returncode: int | None = None
    ) -> None:
        """A slot lost its worker (or could not start one): restart it after a backoff."""
        slot = self._slots[index] if index < len(self._slots) else None
        if slot is None or slot.worker is not worker:
            # A rolling restart's new worker, not serving yet: the restart stops there.
            assert worker is not None and returncode is not None
            log.error("the new %s %s", worker.describe(), describe_exit(returncode))
            return
        slot.worker = None
        now = self.clock()
        served_s = None if worker is None or worker.ready_s is None else now - worker.ready_s
        restart = restart_after_death(slot.failures, served_s, self.policy)
        slot.failures = restart.failures
        if self._roll is not None and self._roll.slot == index and self._roll.old is worker:
            then = "the rolling restart is replacing it"
        else:
            slot.restart_at_s = now + restart.delay_s
            then = f"restarting it in {restart.delay_s:g} s"
        what = f"worker {index}" if worker is None else worker.describe()
        why = "could not be started" if returncode is None else describe_exit(returncode)
        message = f"{what} {why}; {then} ({restart.failures} failure(s) in a row)"
        log.error("%s", message)
        data = {
            "worker": index,
            "pid": None if worker is None else worker.process.pid,
            "replica": None if worker is None else worker.replica,
            "returncode": returncode,
            "restart_in_s": restart.delay_s,
            "failures": restart.failures,
        }
        self._events.record("worker.died", message, data, worker.replica if worker else "")

    # signals --------------------------------------------------------------------------
    def _take_signals(self, wake: socket.socket) -> None:
        try:
            numbers = wake.recv(64)
        except BlockingIOError:
            return
        for number in numbers:
            if number == signal.SIGHUP:
                log.info("SIGHUP: rolling restart of the workers")
                self._hangup()
            elif number in (signal.SIGINT, signal.SIGTERM):
                self._stop(signal.Signals(number))

    def _stop(self, number: signal.Signals) -> None:
        if self._stopping:
            log.warning("%s again: the workers stop without waiting for requests", number.name)
        else:
            log.info("%s: stopping %d workers", number.name, len(self._workers))
        self._stopping = True
        self._roll = None
        for worker in self._workers:
            self._stop_worker(worker, number)

    def _fail(self, reason: str) -> None:
        log.error("%s; stopping the others", reason)
        self._failure = self._failure or reason
        self._stop(signal.SIGTERM)

    # rolling restarts -----------------------------------------------------------------
    def _hangup(self) -> None:
        if self._stopping:
            return
        if self._booting or self._roll is not None:
            # One more restart after this one, reading the config as it is by then.
            self._hangup_pending = True
            return
        self._hangup_pending = False
        try:
            fresh = load_config(self.config_path)
            if fresh.store_url != self.config.store_url:
                raise ConfigError(
                    "its store changed, and workers cannot move to another store one by "
                    "one (stop the gateway and start it again instead)"
                )
        except ConfigError as error:
            message = f"rolling restart refused, the workers keep running: {error}"
            log.error("%s", message)
            self._events.record("workers.restart_refused", message, {})
            return
        if (fresh.server.host, fresh.server.port) != (
            self.config.server.host,
            self.config.server.port,
        ):
            log.warning("server.host and server.port changed: they apply at the next start")
        self.config = fresh
        count = self.count(fresh)
        log.info("rolling restart of %d workers, one at a time", count)
        self._roll = _Roll(deque(range(max(count, len(self._slots)))), keep=count)
        self._slots += [_Slot() for _ in range(count - len(self._slots))]
        self._advance_roll()

    def _advance_roll(self) -> None:
        while (roll := self._roll) is not None:
            if roll.slot is None:
                if not roll.left:
                    self._finish_roll(roll)
                    return
                roll.slot = roll.left.popleft()
                slot = self._slots[roll.slot]
                slot.restart_at_s = None
                roll.old, roll.new = slot.worker, None
            keep = roll.slot < roll.keep
            action = roll_action(
                keep_slot=keep,
                new=None if roll.new is None else roll.new.phase,
                old=None if roll.old is None else roll.old.phase,
            )
            if action is RollAction.START_NEW:
                roll.new = self._spawn(roll.slot)
                if roll.new is None:
                    self._abort_roll(roll, f"worker {roll.slot} could not be started")
                return
            if action is RollAction.WAIT:
                return
            if action is RollAction.ABORT:
                self._abort_roll(roll, f"the new worker {roll.slot} died")
                return
            slot = self._slots[roll.slot]
            if action is RollAction.STOP_OLD:
                assert roll.old is not None
                slot.worker = roll.new if keep else None
                self._stop_worker(roll.old)
                continue
            # This slot is done (a new worker that died meanwhile is restarted as any).
            if keep and roll.new is not None and roll.new.phase is not Phase.GONE:
                slot.worker = roll.new
                roll.replaced += 1
            roll.slot = None

    def _finish_roll(self, roll: _Roll) -> None:
        self._roll = None
        del self._slots[roll.keep :]
        message = (
            f"rolling restart done: {roll.replaced} workers started with the config read again"
        )
        log.info("%s", message)
        self._events.record("workers.restarted", message, {"workers": roll.replaced})
        if self._hangup_pending:
            self._hangup()

    def _abort_roll(self, roll: _Roll, reason: str) -> None:
        self._roll = None
        # Slots this restart added and never filled go again.
        while self._slots and self._slots[-1].worker is None and not self._slots[-1].restart_at_s:
            self._slots.pop()
        message = f"rolling restart aborted, the old workers keep serving: {reason}"
        log.error("%s", message)
        self._events.record("workers.restart_failed", message, {"replaced": roll.replaced})
