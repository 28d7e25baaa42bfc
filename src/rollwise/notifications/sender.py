"""Delivery: each target's own bounded queue and worker thread, POSTing with retries.

:meth:`Notifier.publish` only appends to queues under a lock, so the controller's tick
and a person's command never wait for a receiver; a dead or hanging receiver only
fills its own queue (oldest dropped, counted), and each attempt is bounded by the
target's ``timeout_s``. A failing target is logged once, and again when it recovers.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import httpx

from rollwise.domain import Event
from rollwise.notifications.schedule import BoundedQueue, backoff_s
from rollwise.notifications.targets import Target, payload, wants

log = logging.getLogger("rollwise.notifications")


@dataclass(frozen=True, slots=True)
class Counts:
    """What one target's deliveries came to since the process started."""

    target: str
    sent: int
    failed: int
    dropped: int
    queued: int


@dataclass(frozen=True, slots=True)
class _Delivery:
    event: Event
    id: str


class _Worker:
    """One target's queue and the thread that empties it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._queue: BoundedQueue[_Delivery] = BoundedQueue(target.queue_size)
        self._ready = threading.Condition()
        self._stopping = False
        self._deadline = float("inf")
        self.sent = 0
        self.failed = 0
        self._failing = False
        self._drop_logged = False
        self._thread = threading.Thread(target=self._run, name=f"notify-{target.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, delivery: _Delivery) -> None:
        with self._ready:
            if not self._queue.put(delivery) and not self._drop_logged:
                self._drop_logged = True
                log.warning(
                    "notifications to %s: queue full (%d), dropping the oldest; further "
                    "drops are only counted until it delivers again",
                    self.target.name,
                    self._queue.size,
                )
            self._ready.notify()

    def counts(self) -> Counts:
        with self._ready:
            return Counts(
                self.target.name, self.sent, self.failed, self._queue.dropped, len(self._queue)
            )

    def stop(self, drain_s: float) -> None:
        with self._ready:
            self._stopping = True
            self._deadline = time.monotonic() + drain_s
            self._ready.notify()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def _next(self) -> _Delivery | None:
        with self._ready:
            while True:
                if self._stopping and time.monotonic() >= self._deadline:
                    return None
                delivery = self._queue.take()
                if delivery is not None or self._stopping:
                    return delivery
                self._ready.wait()

    def _wait(self, seconds: float) -> bool:
        """Sleep before a retry; False when a stop ends the wait early."""
        with self._ready:
            end = time.monotonic() + seconds
            while not self._stopping:
                left = end - time.monotonic()
                if left <= 0:
                    return True
                self._ready.wait(left)
            return time.monotonic() + seconds < self._deadline

    def _run(self) -> None:
        target = self.target
        headers = {"content-type": "application/json", **target.headers}
        with httpx.Client(timeout=target.timeout_s, headers=headers) as client:
            while (delivery := self._next()) is not None:
                self._deliver(client, delivery)

    def _deliver(self, client: httpx.Client, delivery: _Delivery) -> None:
        target = self.target
        body = payload(target, delivery.event, delivery.id)
        problem = ""
        for attempt in range(target.retries + 1):
            if attempt and not self._wait(backoff_s(attempt, target.backoff_s)):
                break
            problem = self._attempt(client, body)
            if not problem:
                with self._ready:
                    self.sent += 1
                    self._drop_logged = False
                if self._failing:
                    self._failing = False
                    log.info("notifications to %s delivered again", target.name)
                return
        with self._ready:
            self.failed += 1
        if not self._failing:
            # Once per outage: a dead receiver must not fill the log.
            self._failing = True
            log.warning(
                "notification of %s (%s) to %s failed after %d attempts: %s; further "
                "failures are only counted until it recovers",
                delivery.event.kind,
                delivery.event.model,
                target.name,
                attempt + 1,
                problem,
            )

    def _attempt(self, client: httpx.Client, body: bytes) -> str:
        """POST once; what went wrong, or "" for a 2xx answer. Never the URL or the
        headers in the message: they may hold secrets."""
        try:
            answer = client.post(self.target.url, content=body)
        except httpx.TimeoutException:
            return f"no answer within {self.target.timeout_s:g} s"
        except httpx.HTTPError as error:
            return f"{type(error).__name__}"
        if 200 <= answer.status_code < 300:
            return ""
        return f"HTTP {answer.status_code}"


class Notifier:
    """The targets of one process, fed with the rollout events it records."""

    def __init__(self, targets: Sequence[Target]) -> None:
        self.targets = tuple(targets)
        self._workers = [_Worker(target) for target in self.targets]
        self._started = False

    def start(self) -> Notifier:
        if not self._started:
            self._started = True
            for worker in self._workers:
                worker.start()
        return self

    def publish(self, events: Iterable[Event]) -> None:
        """Queue ``events`` for the targets that want them; never blocks on I/O."""
        for event in events:
            delivery: _Delivery | None = None
            for worker in self._workers:
                if wants(worker.target, event):
                    # One id per event, the same for every target and every retry.
                    delivery = delivery or _Delivery(event, uuid.uuid4().hex)
                    worker.put(delivery)

    def counts(self) -> list[Counts]:
        return [worker.counts() for worker in self._workers]

    def close(self, drain_s: float = 2.0) -> None:
        """Stop the workers: what is queued is still tried for ``drain_s`` (a rollback
        just before a stop is still told), then they end."""
        for worker in self._workers:
            worker.stop(drain_s)
        if self._started:
            end = time.monotonic() + drain_s + max((t.timeout_s for t in self.targets), default=0)
            for worker in self._workers:
                worker.join(max(0.0, end - time.monotonic()))
