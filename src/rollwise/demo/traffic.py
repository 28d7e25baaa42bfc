"""Synthetic user traffic against a rollwise gateway, with delayed ground truth.

``TrafficGenerator`` plays the users of one model. It sends predictions at a steady
rate on an open-loop schedule: request *n* is due at ``start + n / rate`` whether or not
earlier ones have been answered, as with real users, so a slow version shows up as
latency and errors, not as a quietly lower load. After a random delay it posts the true
label of each answered request to the model's feedback endpoint, as a labelling
pipeline would, with its ``feedback`` token. What happened is counted in
``TrafficStats``.

``rollwise demo``, the end-to-end tests and the soak test drive a gateway with it;
``run_traffic`` runs one in a fresh event loop, for callers without one (a test thread).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import statistics
import time
from collections import deque
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Self
from urllib.parse import quote

import httpx

log = logging.getLogger("rollwise.traffic")

TRANSPORT_ERROR = 0
"""The key in ``TrafficStats.failures_by_status`` of requests that got no HTTP answer at
all (connection refused or reset, timeout, still unanswered when the run ended)."""

ERRORS_KEPT = 10
"""How many of the latest error messages ``TrafficStats.last_errors`` keeps."""

# When the schedule falls further behind than this (a stalled event loop, a suspended
# process), the missed requests are counted as skipped instead of being sent in one
# burst that no real population of users would produce.
MAX_LAG_S = 1.0
# The longest the schedule sleeps at once, so that stop() (a plain flag, safe to set
# from any thread) is noticed quickly even at low rates.
STOP_POLL_S = 0.05
# At the end, feedback may still be waiting for its delay: it gets at most the longest
# delay plus this much to be posted before it is dropped.
FEEDBACK_GRACE_S = 2.0
# Idle connections kept open. httpcore's pool checks every open connection (with a
# system call each) on every request, so a large idle pool costs the client more CPU
# than reconnecting over loopback does: with 8 instead of 40 this client kept up with
# 150 requests/s where it otherwise managed ~100, gateway on the same two cores.
KEEPALIVE_CONNECTIONS = 8


@dataclass
class TrafficStats:
    """What a traffic run did so far (the generator's live copy) or up to a snapshot.

    ``sent`` requests end as ``ok`` (2xx) or ``failed`` (any other status, or no HTTP
    answer at all: see ``TRANSPORT_ERROR``); the rest are still in flight. ``skipped``
    requests were due on the schedule but not sent, because ``concurrency`` requests
    were already in flight or the schedule had fallen more than a second behind.
    ``by_version`` counts every answer by the version that the gateway named in
    ``X-Rollwise-Version`` (failures included; ``failed_by_version`` has those alone).
    """

    sent: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    by_version: dict[str, int] = field(default_factory=dict)
    failed_by_version: dict[str, int] = field(default_factory=dict)
    failures_by_status: dict[int, int] = field(default_factory=dict)
    feedback_sent: int = 0
    feedback_failed: int = 0
    # Waiting for their delay or being posted.
    feedback_pending: int = 0
    # Still pending when the run's bounded wait for feedback ended.
    feedback_dropped: int = 0
    last_errors: deque[str] = field(default_factory=lambda: deque(maxlen=ERRORS_KEPT))
    # time.monotonic() when sending began and ended; in a snapshot of a run still going
    # on, ``ended_at`` is when the snapshot was taken.
    started_at: float | None = None
    ended_at: float | None = None

    @property
    def in_flight(self) -> int:
        return self.sent - self.ok - self.failed

    @property
    def elapsed_s(self) -> float:
        """Seconds spent sending (the wait for feedback at the end is not counted)."""
        if self.started_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else time.monotonic()
        return max(0.0, end - self.started_at)

    @property
    def requests_per_s(self) -> float:
        """Requests sent per second of sending, as measured (not as asked for)."""
        elapsed = self.elapsed_s
        return self.sent / elapsed if elapsed > 0 else 0.0

    def snapshot(self) -> TrafficStats:
        """A copy that later traffic does not change, e.g. for a live view.

        Safe to call from another thread than the one running the generator: each
        container is copied in one step, which CPython does not interleave with the
        generator's updates.
        """
        return replace(
            self,
            by_version=dict(self.by_version),
            failed_by_version=dict(self.failed_by_version),
            failures_by_status=dict(self.failures_by_status),
            last_errors=deque(self.last_errors, maxlen=ERRORS_KEPT),
            ended_at=(
                self.ended_at
                if self.ended_at is not None or self.started_at is None
                else time.monotonic()
            ),
        )


@dataclass(frozen=True)
class _Request:
    user: str
    row: list[float]
    label: Any
    # Seconds after the answer to post the label; None: no feedback for this one.
    feedback_after: float | None


def _plain(value: Any) -> Any:
    """A JSON-ready value: NumPy scalars and arrays become Python numbers and lists."""
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else value


class TrafficGenerator:
    """Users of one model: predictions at ``rate_per_s``, then their true labels.

    Each request comes from a user ``u0`` … ``u{users-1}`` (in ``X-User-Id``), carries
    one row of ``rows`` (plus Gaussian noise of ``noise`` times each feature's standard
    deviation, if asked) and, when answered with a 2xx and drawn with probability
    ``feedback_share``, is followed after a delay drawn from ``feedback_delay_s`` by
    the row's label posted to ``/models/{model}/feedback`` with ``feedback_token`` (a
    token with the ``feedback`` role; None: no token, for a gateway whose config says
    ``feedback: {auth: none}`` or that runs with ``--insecure-dev``). Rows and labels
    default to the iris hold-out set of ``rollwise.example_models``.

    Users are drawn uniformly, not from a heavy-tailed (Zipf) law, on purpose: routing
    is sticky per user while the split checks (configured weights, the sample-ratio
    gate) count requests. Under a Zipf law a few heavy users would carry most requests,
    and the request split of a short run would wander far from the weights by chance
    alone, showing a sample-ratio mismatch where routing is right.

    Everything random is drawn from ``rng``, all of it when a request is due and in the
    same amount for every request, so one seed gives the same requests whatever the
    replies and their timing.

    Use ``async with TrafficGenerator(...) as generator: await generator.run(10)``;
    ``stop()`` and ``stats.snapshot()`` may be called from any thread.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        rate_per_s: float,
        users: int = 500,
        feedback: bool = True,
        feedback_delay_s: tuple[float, float] = (0.5, 2.0),
        feedback_share: float = 1.0,
        feedback_token: str | None = None,
        rows: Sequence[Sequence[float]] | None = None,
        labels: Sequence[Any] | None = None,
        noise: float = 0.0,
        rng: random.Random | None = None,
        headers: Mapping[str, str] | None = None,
        concurrency: int = 32,
        timeout_s: float = 10.0,
    ) -> None:
        if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
            raise ValueError(f"rate_per_s must be a positive number, got {rate_per_s!r}")
        if users < 1:
            raise ValueError(f"users must be at least 1, got {users!r}")
        low, high = feedback_delay_s
        if not 0 <= low <= high or not math.isfinite(high):
            raise ValueError(
                f"feedback_delay_s must be (low, high) with 0 <= low <= high, "
                f"got {feedback_delay_s!r}"
            )
        if not 0 <= feedback_share <= 1:
            raise ValueError(f"feedback_share must be within 0..1, got {feedback_share!r}")
        if not (noise >= 0 and math.isfinite(noise)):
            raise ValueError(f"noise must be a number >= 0, got {noise!r}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency!r}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        if rows is None:
            if labels is not None:
                raise ValueError("labels were given without rows: give both or neither")
            # Imported here: it pulls in NumPy and scikit-learn, which callers that
            # bring their own rows do not need.
            from rollwise.example_models import iris_holdout

            features, classes = iris_holdout()
            rows, labels = features.tolist(), classes.tolist()
        self.rows = [[float(value) for value in row] for row in rows]
        if not self.rows:
            raise ValueError("rows is empty: give at least one row to send")
        widths = {len(row) for row in self.rows}
        if len(widths) != 1 or 0 in widths:
            raise ValueError(f"rows must all have the same number (> 0) of features, got {widths}")
        self.labels = None if labels is None else [_plain(label) for label in labels]
        if self.labels is not None and len(self.labels) != len(self.rows):
            raise ValueError(f"{len(self.rows)} rows but {len(self.labels)} labels")
        if feedback and self.labels is None:
            raise ValueError("feedback needs the true labels: give labels, or feedback=False")

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.rate_per_s = float(rate_per_s)
        self.users = users
        self.feedback = feedback
        self.feedback_delay_s = (float(low), float(high))
        self.feedback_share = feedback_share
        # Sent with the labels only: predictions need no token, and a feedback token
        # would let them do nothing more anyway.
        self._feedback_headers = (
            {"authorization": f"Bearer {feedback_token}"} if feedback_token else {}
        )
        self.noise = noise
        self.rng = rng if rng is not None else random.Random()
        self.headers = dict(headers or {})
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.stats = TrafficStats()

        segment = quote(model, safe="")
        self._predict_path = f"/models/{segment}/predict"
        self._feedback_path = f"/models/{segment}/feedback"
        # Noise is scaled per feature, so one ``noise`` suits features of any range.
        self._spread = (
            [statistics.pstdev(column) for column in zip(*self.rows, strict=True)] if noise else []
        )
        self._http: httpx.AsyncClient | None = None
        self._entered = False
        self._ran = False
        self._stopping = False
        self._in_flight = 0
        self._predictions: set[asyncio.Task[None]] = set()
        self._feedbacks: set[asyncio.Task[None]] = set()
        # Feedback posts are small and nobody waits for them: a few connections do.
        self._feedback_concurrency = max(1, concurrency // 4)
        self._feedback_slots: asyncio.Semaphore | None = None

    # lifecycle --------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self._entered = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def stop(self) -> None:
        """End the run soon: no new requests; pending feedback still gets its bounded wait.

        Idempotent, and safe from any thread: it only sets a flag the schedule checks
        at least every 50 ms.
        """
        self._stopping = True

    async def run(self, duration_s: float | None = None) -> TrafficStats:
        """Send traffic for ``duration_s`` seconds (None: until ``stop()``); return the stats.

        Then wait for the requests still in flight (each bounded by ``timeout_s``) and
        for pending feedback (at most the longest feedback delay plus 2 s); feedback
        still pending after that is dropped and counted in ``feedback_dropped``.
        A generator runs once.
        """
        if self._ran:
            raise RuntimeError("a TrafficGenerator runs once: make a new one")
        if duration_s is not None and not duration_s >= 0:
            raise ValueError(f"duration_s must be >= 0 or None, got {duration_s!r}")
        self._ran = True
        self._feedback_slots = asyncio.Semaphore(self._feedback_concurrency)
        try:
            await self._send_on_schedule(duration_s)
            self.stats.ended_at = time.monotonic()
            await self._drain()
        finally:
            if self.stats.ended_at is None:
                self.stats.ended_at = time.monotonic()
            # Only reached with tasks left when run() itself was cancelled.
            await self._cancel(self._predictions | self._feedbacks)
            if not self._entered:
                await self.aclose()
        return self.stats.snapshot()

    # the schedule -----------------------------------------------------------------------
    async def _send_on_schedule(self, duration_s: float | None) -> None:
        stats = self.stats
        interval = 1.0 / self.rate_per_s
        start = time.monotonic()
        stats.started_at = start
        end = math.inf if duration_s is None else start + duration_s
        slot = 0
        while not self._stopping:
            now = time.monotonic()
            if now >= end:
                break
            due = start + slot * interval
            if due > now:
                await asyncio.sleep(min(due - now, end - now, STOP_POLL_S))
                continue
            lag = now - due
            # Never less than one interval, so that at least one slot is skipped.
            if lag > max(MAX_LAG_S, interval):
                missed = int(lag * self.rate_per_s)
                slot += missed
                stats.skipped += missed
                continue
            self._launch()
            slot += 1

    def _launch(self) -> None:
        request = self._draw()
        if self._in_flight >= self.concurrency:
            # Open loop: a request that cannot go now is not queued to go later, or the
            # backlog would grow without bound while the gateway is slow.
            self.stats.skipped += 1
            return
        self._in_flight += 1
        self.stats.sent += 1
        self._spawn(self._predict(request), self._predictions)

    def _draw(self) -> _Request:
        rng = self.rng
        user = f"u{rng.randrange(self.users)}"
        index = rng.randrange(len(self.rows))
        row = self.rows[index]
        if self.noise:
            row = [
                value + rng.gauss(0.0, self.noise * spread)
                for value, spread in zip(row, self._spread, strict=True)
            ]
        gets_feedback = rng.random() < self.feedback_share
        delay = rng.uniform(*self.feedback_delay_s)
        return _Request(
            user=user,
            row=row,
            label=None if self.labels is None else self.labels[index],
            feedback_after=delay if self.feedback and gets_feedback else None,
        )

    # requests ---------------------------------------------------------------------------
    def _client(self) -> httpx.AsyncClient:
        # Made on first use, inside the loop that runs the generator, so that a
        # generator built in one thread can run in another thread's loop.
        if self._http is None:
            # Room for a full load of predictions and of feedback posts at once, so no
            # prediction waits for a connection and its timeout measures the gateway.
            pool = self.concurrency + self._feedback_concurrency
            self._http = httpx.AsyncClient(
                base_url=self.base_url,
                headers=self.headers,
                timeout=self.timeout_s,
                limits=httpx.Limits(
                    max_connections=pool,
                    max_keepalive_connections=min(pool, KEEPALIVE_CONNECTIONS),
                ),
            )
        return self._http

    async def _predict(self, request: _Request) -> None:
        stats = self.stats
        try:
            try:
                response = await self._client().post(
                    self._predict_path,
                    json={"inputs": [request.row]},
                    headers={"x-user-id": request.user},
                )
            except httpx.HTTPError as error:
                self._failed(TRANSPORT_ERROR, None, f"predict: {type(error).__name__}: {error}")
                return
            version = response.headers.get("x-rollwise-version")
            if version:
                stats.by_version[version] = stats.by_version.get(version, 0) + 1
            if not response.is_success:
                self._failed(
                    response.status_code,
                    version,
                    f"predict: HTTP {response.status_code} from {version or 'no version'}: "
                    f"{response.text[:200]}",
                )
                return
            stats.ok += 1
            if request.feedback_after is None:
                return
            request_id = response.headers.get("x-request-id")
            if not request_id:
                stats.feedback_failed += 1
                self._error("feedback: the answer had no X-Request-Id to send feedback for")
                return
            stats.feedback_pending += 1
            self._spawn(
                self._post_feedback(request_id, request.label, request.feedback_after),
                self._feedbacks,
            )
        finally:
            self._in_flight -= 1

    async def _post_feedback(self, request_id: str, label: Any, delay_s: float) -> None:
        stats = self.stats
        assert self._feedback_slots is not None
        try:
            await asyncio.sleep(delay_s)
            async with self._feedback_slots:
                try:
                    response = await self._client().post(
                        self._feedback_path,
                        json={"request_id": request_id, "label": label},
                        headers=self._feedback_headers,
                    )
                except httpx.HTTPError as error:
                    stats.feedback_failed += 1
                    self._error(f"feedback: {type(error).__name__}: {error}")
                    return
            if response.is_success:
                stats.feedback_sent += 1
            else:
                stats.feedback_failed += 1
                self._error(f"feedback: HTTP {response.status_code}: {response.text[:200]}")
        finally:
            stats.feedback_pending -= 1

    def _failed(self, status: int, version: str | None, message: str) -> None:
        stats = self.stats
        stats.failed += 1
        stats.failures_by_status[status] = stats.failures_by_status.get(status, 0) + 1
        if version:
            stats.failed_by_version[version] = stats.failed_by_version.get(version, 0) + 1
        self._error(message)

    def _error(self, message: str) -> None:
        self.stats.last_errors.append(message)

    # tasks ------------------------------------------------------------------------------
    def _spawn(self, work: Coroutine[Any, Any, None], tasks: set[asyncio.Task[None]]) -> None:
        task = asyncio.create_task(work)
        tasks.add(task)
        task.add_done_callback(functools.partial(self._done, tasks))

    def _done(self, tasks: set[asyncio.Task[None]], task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        # Expected failures are counted where they happen; anything else is a bug in
        # the generator, which must still show rather than vanish with its task.
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("traffic task failed", exc_info=error)
            self._error(f"internal: {type(error).__name__}: {error}")

    async def _drain(self) -> None:
        if self._predictions:
            # Each request is bounded by the client's timeout; the margin covers a read
            # timeout that restarts between chunks of a trickling reply.
            await asyncio.wait(set(self._predictions), timeout=self.timeout_s + 1.0)
        for _ in await self._cancel(self._predictions):
            self._failed(TRANSPORT_ERROR, None, "predict: still unanswered when the run ended")
        # Predictions answered during the wait above have scheduled their feedback by now.
        if self._feedbacks:
            await asyncio.wait(
                set(self._feedbacks), timeout=self.feedback_delay_s[1] + FEEDBACK_GRACE_S
            )
        self.stats.feedback_dropped += len(await self._cancel(self._feedbacks))

    @staticmethod
    async def _cancel(tasks: set[asyncio.Task[None]]) -> list[asyncio.Task[None]]:
        """Cancel the tasks not done yet, wait until they end, and return them."""
        left = [task for task in tasks if not task.done()]
        for task in left:
            task.cancel()
        if left:
            await asyncio.gather(*left, return_exceptions=True)
        return left


def run_traffic(base_url: str, model: str, duration_s: float, **kwargs: Any) -> TrafficStats:
    """Run a ``TrafficGenerator(base_url, model, **kwargs)`` for ``duration_s`` in a new loop.

    For callers without an event loop, such as a test that runs traffic in a thread.
    """

    async def main() -> TrafficStats:
        async with TrafficGenerator(base_url, model, **kwargs) as generator:
            return await generator.run(duration_s)

    return asyncio.run(main())
