"""The gateway's log of answers: batches for the store, and recent ones for feedback.

Every answer (served or shadow) is queued for the next flush to the store, where
feedback can find it for the retention period; the most recent ones are also kept in
memory so that feedback arriving before that flush is joined at once.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from typing import Any

from rollwise.domain import Role
from rollwise.store.base import PredictionRecord

log = logging.getLogger("rollwise.gateway")

MAX_PENDING = 200_000
"""Answers waiting for the store at most (about 11 minutes at 300 answers a second);
beyond, the oldest are dropped, counted and logged once per outage."""
MAX_CACHED_ROWS = 1_000
"""Answers with more rows are joined to feedback from the store, not from memory."""

_Answer = tuple[str, str, str, tuple[Any, ...], float]
"""(model, version, role, outputs, at_s) of one answer kept in memory."""


class PredictionLog:
    """Answers by request id: a pending batch for the store and a bounded recent cache."""

    def __init__(self, cache_size: int, max_pending: int = MAX_PENDING) -> None:
        self.cache_size = cache_size
        self.max_pending = max_pending
        # A deque: while the store is down, every new answer beyond the bound pushes
        # out the oldest one, which must cost O(1) on the request path.
        self._pending: deque[PredictionRecord] = deque()
        self.dropped_total = 0
        """Answers dropped unwritten since start (a Prometheus counter)."""
        self._dropped_in_outage = 0
        """Answers dropped since the store last took a batch; > 0 means "dropping"."""
        # Plain tuples of plain values: the garbage collector stops tracking them, so a
        # cache of 100,000 requests adds nothing to its full passes.
        self._recent: OrderedDict[str, tuple[_Answer, ...]] = OrderedDict()

    @property
    def pending(self) -> int:
        """Answers waiting for the store."""
        return len(self._pending)

    def remember(self, record: PredictionRecord) -> None:
        self._pending.append(record)
        if len(self._pending) > self.max_pending:
            self._drop_oldest()
        if self.cache_size <= 0 or len(record.outputs) > MAX_CACHED_ROWS:
            return
        answer = (
            record.model,
            record.version,
            record.role.value,
            tuple(record.outputs),
            record.at_s,
        )
        recent = self._recent.get(record.request_id)
        if recent is None or record.role is Role.SERVED:
            # A served answer starts the entry afresh: a caller who reuses a request id
            # gets feedback joined to its latest request, and entries stay small.
            self._recent.pop(record.request_id, None)
            self._recent[record.request_id] = (answer,)
            if len(self._recent) > self.cache_size:
                self._recent.popitem(last=False)
        else:
            self._recent[record.request_id] = (*recent, answer)

    def recent(self, request_id: str) -> list[PredictionRecord] | None:
        """The answers to ``request_id`` still in memory, or None when none are."""
        answers = self._recent.get(request_id)
        if answers is None:
            return None
        return [
            PredictionRecord(request_id, model, version, Role(role), list(outputs), at_s)
            for model, version, role, outputs, at_s in answers
        ]

    def take_batch(self) -> list[PredictionRecord]:
        """The answers due for the store, oldest first; the caller writes them and
        then calls ``written`` or, when the store refused them, ``give_back``."""
        batch = list(self._pending)
        self._pending.clear()
        return batch

    def give_back(self, batch: list[PredictionRecord]) -> None:
        """A batch the store did not take: it goes out first at the next flush, as far
        as the bound allows (the oldest answers are dropped first)."""
        self._pending.extendleft(reversed(batch))
        self._drop_oldest()

    def written(self) -> None:
        """The store took a batch: an outage that dropped answers is over, say so."""
        if self._dropped_in_outage:
            log.warning(
                "the store takes logged predictions again; %d were dropped while it did "
                "not (%d since start)",
                self._dropped_in_outage,
                self.dropped_total,
            )
            self._dropped_in_outage = 0

    def _drop_oldest(self) -> None:
        excess = len(self._pending) - self.max_pending
        if excess <= 0:
            return
        for _ in range(excess):
            self._pending.popleft()
        if not self._dropped_in_outage:
            # One line when dropping starts and one when it ends (``written``): a store
            # that is down for an hour must not write a line per request or per flush.
            log.warning(
                "the store is not taking logged predictions: keeping the newest %d, "
                "dropping older ones (counted in rollwise_predictions_dropped_total); "
                "feedback for a dropped prediction will answer 404",
                self.max_pending,
            )
        self._dropped_in_outage += excess
        self.dropped_total += excess
