"""Late labels in one replica's memory: kept by their predictions' second up to a bound,
beyond which they count at arrival rather than be lost; kept through a failed flush and
written once; counted once in the running totals."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from rollwise.config import parse_config
from rollwise.domain import Role
from rollwise.errors import StoreError
from rollwise.runtime.context import Context
from rollwise.runtime.late_labels import FeedbackSums, LateLabels
from rollwise.runtime.telemetry import Telemetry
from rollwise.store.base import FeedbackRecord, MetricBucketRow, PredictionRecord

CONFIG = {"models": {"iris": {"stable": "v1", "versions": {"v1": {"backend": "fake"}}}}}


class FlakyStore:
    """What telemetry writes of a store, failing while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.buckets: list[MetricBucketRow] = []

    def write_metric_buckets(self, rows: Sequence[MetricBucketRow]) -> None:
        if self.down:
            raise StoreError("database or disk is full")
        self.buckets.extend(rows)

    def log_predictions(self, records: Sequence[PredictionRecord]) -> None:
        if self.down:
            raise StoreError("database or disk is full")

    def record_feedback(self, feedback: FeedbackRecord) -> bool:
        return True


def make(tmp_path: Path, clock: list[float]) -> tuple[Telemetry, FlakyStore]:
    store = FlakyStore()
    ctx = Context(
        parse_config(CONFIG, base_dir=tmp_path, environ={}),
        store=store,  # type: ignore[arg-type]  # only what telemetry uses here
        clock=lambda: clock[0],
        rng=random.Random(0),
        replica="r",
    )
    return Telemetry(ctx), store


def answered_then_labelled(telemetry: Telemetry, clock: list[float], request_id: str) -> None:
    """An answer, a flush, and then its label: late by one window."""
    telemetry.predictions.remember(
        PredictionRecord(request_id, "iris", "v1", Role.SERVED, [0], clock[0])
    )
    clock[0] += 1.0
    asyncio.run(telemetry.flush())
    clock[0] += 0.5
    asyncio.run(telemetry.feedback("iris", request_id, 0))


def test_beyond_the_bound_a_new_second_is_refused_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    late = LateLabels(max_keys=2)
    one = FeedbackSums(1, 1)
    with caplog.at_level(logging.WARNING, logger="rollwise.gateway"):
        assert late.add(("iris", "v1", Role.SERVED, 10), one)
        assert late.add(("iris", "v1", Role.SERVED, 11), one)
        assert not late.add(("iris", "v1", Role.SERVED, 12), one)
        assert not late.add(("iris", "v1", Role.SHADOW, 10), one)
        assert late.add(("iris", "v1", Role.SERVED, 10), one), "a held second takes more"
        assert len(caplog.records) == 1
        assert {k[3]: s.count for k, s in late.take().items()} == {10: 2, 11: 1}
        late.written()
        late.written()
    assert len(caplog.records) == 2 and "2 counted toward their arrival" in caplog.messages[1]
    assert late.totals()[("iris", "v1", Role.SERVED)].feedback == 3


def test_a_late_label_survives_a_failed_flush_and_is_written_once(tmp_path: Path) -> None:
    clock = [1000.0]
    telemetry, store = make(tmp_path, clock)
    answered_then_labelled(telemetry, clock, "a")
    store.down = True
    clock[0] += 1.0
    with pytest.raises(StoreError):
        asyncio.run(telemetry.flush())
    store.down = False
    clock[0] += 1.0
    asyncio.run(telemetry.flush())

    late = [b for b in store.buckets if b.predicted_s is not None]
    assert [(b.predicted_s, b.start_s, b.payload) for b in late] == [
        (1000, 1002, {"feedback": 1, "correct": 1})
    ]
    totals = {key: window.feedback for key, window in telemetry.totals()}
    assert totals == {("iris", "v1", Role.SERVED): 1}


def test_a_label_beyond_the_bound_counts_at_its_arrival(tmp_path: Path) -> None:
    clock = [1000.0]
    telemetry, store = make(tmp_path, clock)
    telemetry.late.max_keys = 1
    telemetry.predictions.remember(PredictionRecord("b", "iris", "v1", Role.SERVED, [0], 999.0))
    answered_then_labelled(telemetry, clock, "a")
    asyncio.run(telemetry.feedback("iris", "b", 0))
    clock[0] += 1.0
    asyncio.run(telemetry.flush())

    labelled = [(b.predicted_s, b.payload.get("feedback")) for b in store.buckets]
    assert (1000, 1) in labelled and (None, 1) in labelled
    assert sum(b.payload.get("feedback", 0) for b in store.buckets) == 2
    totals = {key: window.feedback for key, window in telemetry.totals()}
    assert totals == {("iris", "v1", Role.SERVED): 2}
