"""The gateway's log of answers: batches for the store, and recent ones for feedback.

Every answer (served or shadow) is queued for the next flush to the store, where
feedback can find it for the retention period; the most recent ones are also kept in
memory so that feedback arriving before that flush is joined at once.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from rollwise.domain import Role
from rollwise.store.base import PredictionRecord

log = logging.getLogger("rollwise.gateway")

MAX_PENDING = 200_000
"""Answers waiting for the store at most; beyond, the oldest are dropped and logged."""
MAX_CACHED_ROWS = 1_000
"""Answers with more rows are joined to feedback from the store, not from memory."""

_Answer = tuple[str, str, str, tuple[Any, ...], float]
"""(model, version, role, outputs, at_s) of one answer kept in memory."""


class PredictionLog:
    """Answers by request id: a pending batch for the store and a bounded recent cache."""

    def __init__(self, cache_size: int) -> None:
        self.cache_size = cache_size
        self._pending: list[PredictionRecord] = []
        # Plain tuples of plain values: the garbage collector stops tracking them, so a
        # cache of 100,000 requests adds nothing to its full passes.
        self._recent: OrderedDict[str, tuple[_Answer, ...]] = OrderedDict()

    def remember(self, record: PredictionRecord) -> None:
        self._pending.append(record)
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
        """The answers due for the store, oldest first; the caller writes them."""
        batch, self._pending = self._pending, []
        if len(batch) > MAX_PENDING:
            # The store has been failing or slow: keep the newest, say what was lost.
            log.warning(
                "dropping %d logged predictions the store could not take in time",
                len(batch) - MAX_PENDING,
            )
            batch = batch[-MAX_PENDING:]
        return batch

    def give_back(self, batch: list[PredictionRecord]) -> None:
        """A batch the store did not take: it goes out first at the next flush."""
        self._pending[:0] = batch
