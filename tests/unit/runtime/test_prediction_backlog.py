"""Logged predictions survive a store outage up to a bound: kept for the next flush,
the oldest dropped beyond it, drops counted for /metrics, and the outage logged in one
line when dropping starts and one when the store takes them again. Also: a failing
background job is logged once with its traceback, not at every interval."""

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
from rollwise.metrics.prometheus import GatewayCollector, render
from rollwise.runtime.context import Context
from rollwise.runtime.gateway import Gateway
from rollwise.runtime.telemetry import Telemetry
from rollwise.store.base import MetricBucketRow, PredictionRecord, Store

CONFIG = {"models": {"iris": {"stable": "v1", "versions": {"v1": {"backend": "fake"}}}}}
BOUND = 10


class FlakyStore:
    """The telemetry writes of a store, failing while ``down`` like a full disk."""

    def __init__(self) -> None:
        self.down = False
        self.predictions: list[PredictionRecord] = []
        self.buckets: list[MetricBucketRow] = []

    def _check(self) -> None:
        if self.down:
            raise StoreError("database or disk is full")

    def write_metric_buckets(self, rows: Sequence[MetricBucketRow]) -> None:
        self._check()
        self.buckets.extend(rows)

    def log_predictions(self, records: Sequence[PredictionRecord]) -> None:
        self._check()
        self.predictions.extend(records)


def make(tmp_path: Path) -> tuple[Telemetry, FlakyStore]:
    config = parse_config(CONFIG, base_dir=tmp_path, environ={})
    store = FlakyStore()
    ctx = Context(
        config,
        store=store,  # type: ignore[arg-type]  # only what telemetry writes
        clock=lambda: 1000.0,
        rng=random.Random(0),
        replica="r",
    )
    telemetry = Telemetry(ctx)
    telemetry.predictions.max_pending = BOUND
    return telemetry, store


def answer(telemetry: Telemetry, n: int) -> None:
    telemetry.predictions.remember(PredictionRecord(f"r{n}", "iris", "v1", Role.SERVED, [0], 1.0))
    telemetry.metrics.window("iris", "v1", Role.SERVED).record_call(
        1.0, failed=False, timed_out=False
    )


def flush(telemetry: Telemetry) -> bool:
    """Whether the flush went through."""
    try:
        asyncio.run(telemetry.flush())
    except StoreError:
        return False
    return True


def drop_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "rollwise.gateway" and "logged predictions" in r.getMessage()
    ]


def test_an_outage_within_the_bound_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    telemetry, store = make(tmp_path)
    store.down = True
    with caplog.at_level(logging.INFO):
        for n in range(BOUND):
            answer(telemetry, n)
            if n % 3 == 2:
                assert not flush(telemetry)
        store.down = False
        assert flush(telemetry)
    assert [r.request_id for r in store.predictions] == [f"r{n}" for n in range(BOUND)]
    assert sum(b.payload["requests"] for b in store.buckets) == BOUND
    assert telemetry.predictions.dropped_total == 0
    assert drop_lines(caplog) == []


def test_a_failed_metrics_write_does_not_lose_the_predictions_taken_with_it(
    tmp_path: Path,
) -> None:
    # The metrics are written first; when they fail, the predictions of the same flush
    # were never tried and must stay queued.
    telemetry, store = make(tmp_path)
    answer(telemetry, 0)
    store.down = True
    assert not flush(telemetry)
    store.down = False
    assert flush(telemetry)
    assert [r.request_id for r in store.predictions] == ["r0"]


def test_beyond_the_bound_the_oldest_are_dropped_counted_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    telemetry, store = make(tmp_path)
    store.down = True
    total = BOUND + 25
    with caplog.at_level(logging.INFO):
        for n in range(total):
            answer(telemetry, n)
            assert not flush(telemetry)  # a flush every answer: the worst case for logs
        assert telemetry.predictions.pending == BOUND
        store.down = False
        assert flush(telemetry)
        answer(telemetry, total)
        assert flush(telemetry)
    # The newest answers made it; exactly the oldest ones beyond the bound are gone.
    assert [r.request_id for r in store.predictions] == [
        f"r{n}" for n in range(total - BOUND, total + 1)
    ]
    assert telemetry.predictions.dropped_total == total - BOUND
    lines = drop_lines(caplog)
    assert len(lines) == 2, lines
    assert "dropping" in lines[0]
    assert "again" in lines[1] and f"{total - BOUND} were dropped" in lines[1]
    collector = GatewayCollector(telemetry.metrics.totals, dict, dict, lambda: 25)
    assert b"rollwise_predictions_dropped_total 25.0" in render(collector)


def test_a_second_outage_is_logged_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    telemetry, store = make(tmp_path)
    with caplog.at_level(logging.INFO):
        for _ in range(2):
            store.down = True
            for n in range(BOUND + 1):
                answer(telemetry, n)
            assert not flush(telemetry)
            store.down = False
            assert flush(telemetry)
    assert telemetry.predictions.dropped_total == 2
    assert len(drop_lines(caplog)) == 4


def test_a_failing_background_job_logs_one_traceback_then_its_recovery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = Gateway(parse_config(CONFIG, base_dir=tmp_path, environ={}))
    calls = 0
    enough = asyncio.Event()

    async def job() -> None:
        nonlocal calls
        calls += 1
        if calls >= 25:
            enough.set()
        if calls <= 20:
            raise StoreError("database or disk is full")

    async def main() -> None:
        task = asyncio.create_task(gateway._every(0.001, job, remind_s=3600.0))
        await enough.wait()
        task.cancel()

    with caplog.at_level(logging.INFO, logger="rollwise.gateway"):
        asyncio.run(main())
    lines = [r for r in caplog.records if r.name == "rollwise.gateway"]
    assert len(lines) == 2, [r.getMessage() for r in lines]
    failed, recovered = lines
    assert failed.exc_info is not None and failed.exc_info[0] is StoreError
    assert "job" in failed.getMessage()
    assert recovered.exc_info is None and "recovered after 20 failures" in recovered.getMessage()


def test_a_job_failing_for_long_is_reminded_of_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = Gateway(parse_config(CONFIG, base_dir=tmp_path, environ={}))
    calls = 0
    enough = asyncio.Event()

    async def job() -> None:
        nonlocal calls
        calls += 1
        if calls >= 5:
            enough.set()
        raise StoreError("database or disk is full")

    async def main() -> None:
        # remind_s=0: every later failure is due a reminder, none with a traceback.
        task = asyncio.create_task(gateway._every(0.001, job, remind_s=0.0))
        await enough.wait()
        task.cancel()

    with caplog.at_level(logging.INFO, logger="rollwise.gateway"):
        asyncio.run(main())
    lines = [r for r in caplog.records if r.name == "rollwise.gateway"]
    assert sum(r.exc_info is not None for r in lines) == 1
    assert all("still failing" in r.getMessage() for r in lines[1:])
    assert len(lines) >= 4


def test_the_fake_store_has_the_methods_of_a_store() -> None:
    # Keeps the fake honest: the methods it stands in for still exist under these names.
    for name in ("write_metric_buckets", "log_predictions"):
        assert hasattr(Store, name)
