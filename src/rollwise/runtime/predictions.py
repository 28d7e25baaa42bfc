"""The gateway's log of answers: batches for the store, and recent ones for feedback.

Every answer (served or shadow) is queued for the next flush to the store, where
feedback can find it for the retention period; the most recent ones are also kept in
memory so that feedback arriving before that flush is joined at once.

Both are kept as flat tuples of strings and numbers, never as objects or nested
tuples: the collector stops tracking such a tuple at the first pass it survives, so
thousands of answers waiting for the store add nothing to later passes. (As
``PredictionRecord``s with a list inside each they made a full pass take over 100 ms;
a tuple holding a tuple is untracked one level per pass, so it reached the older
generations first.)
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from rollwise.domain import ROLES, Role
from rollwise.store.base import PredictionRecord

log = logging.getLogger("rollwise.gateway")

MAX_PENDING = 200_000
"""Answers waiting for the store at most (about 11 minutes at 300 answers a second);
beyond, the oldest are dropped, counted and logged once per outage."""
MAX_CACHED_ROWS = 1_000
"""Answers with more rows are joined to feedback from the store, not from memory."""

LoggedAnswer = tuple[Any, ...]
"""One answer due for the store: (request_id, model, version, role, at_s, *outputs)."""
_Answers = tuple[Any, ...]
"""The answers to one request kept in memory, one after the other, each as
(model, version, role, at_s, number of outputs, *outputs)."""
_HEAD = 5
"""Items before the outputs of an answer in ``_Answers``."""


class RecordsOf(Collection[PredictionRecord]):
    """A batch as the store takes it, each record made only as the store reads it: a
    backlog of 100,000 answers never becomes 100,000 objects at once (whose collector
    passes would stall the event loop)."""

    def __init__(self, batch: list[LoggedAnswer]) -> None:
        self._batch = batch

    def __len__(self) -> int:
        return len(self._batch)

    def __iter__(self) -> Iterator[PredictionRecord]:
        for row in self._batch:
            yield PredictionRecord(row[0], row[1], row[2], ROLES[row[3]], list(row[5:]), row[4])

    def __contains__(self, item: object) -> bool:
        return any(record == item for record in self)


class PredictionLog:
    """Answers by request id: a pending batch for the store and a bounded recent cache."""

    def __init__(self, cache_size: int, max_pending: int = MAX_PENDING) -> None:
        self.cache_size = cache_size
        self.max_pending = max_pending
        # A deque: while the store is down, every new answer beyond the bound pushes
        # out the oldest one, which must cost O(1) on the request path.
        self._pending: deque[LoggedAnswer] = deque()
        self.dropped_total = 0
        """Answers dropped unwritten since start (a Prometheus counter)."""
        self._dropped_in_outage = 0
        """Answers dropped since the store last took a batch; > 0 means "dropping"."""
        self._recent: OrderedDict[str, _Answers] = OrderedDict()

    @property
    def pending(self) -> int:
        """Answers waiting for the store."""
        return len(self._pending)

    def remember(self, record: PredictionRecord) -> None:
        self.log(
            record.request_id,
            record.model,
            record.version,
            record.role,
            record.outputs,
            record.at_s,
        )

    def log(
        self,
        request_id: str,
        model: str,
        version: str,
        role: Role,
        outputs: Sequence[Any],
        at_s: float,
    ) -> None:
        """Queue one answer for the store and keep it for feedback (``outputs`` holds
        plain values: strings and numbers)."""
        role_value = role.value
        self._pending.append((request_id, model, version, role_value, at_s, *outputs))
        if len(self._pending) > self.max_pending:
            self._drop_oldest()
        if self.cache_size <= 0 or len(outputs) > MAX_CACHED_ROWS:
            return
        recent = self._recent.get(request_id)
        if recent is None or role is Role.SERVED:
            # A served answer starts the entry afresh: a caller who reuses a request id
            # gets feedback joined to its latest request, and entries stay small.
            self._recent.pop(request_id, None)
            self._recent[request_id] = (model, version, role_value, at_s, len(outputs), *outputs)
            if len(self._recent) > self.cache_size:
                self._recent.popitem(last=False)
        else:
            self._recent[request_id] = (
                *recent,
                model,
                version,
                role_value,
                at_s,
                len(outputs),
                *outputs,
            )

    def recent(self, request_id: str) -> list[PredictionRecord] | None:
        """The answers to ``request_id`` still in memory, or None when none are."""
        answers = self._recent.get(request_id)
        if answers is None:
            return None
        records = []
        start = 0
        while start < len(answers):
            model, version, role, at_s, count = answers[start : start + _HEAD]
            outputs = list(answers[start + _HEAD : start + _HEAD + count])
            records.append(PredictionRecord(request_id, model, version, ROLES[role], outputs, at_s))
            start += _HEAD + count
        return records

    def take_batch(self) -> list[LoggedAnswer]:
        """The answers due for the store, oldest first (``RecordsOf`` makes them the
        store's records); the caller writes them and then calls ``written`` or, when
        the store refused them, ``give_back``."""
        batch = list(self._pending)
        self._pending.clear()
        return batch

    def give_back(self, batch: list[LoggedAnswer]) -> None:
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
