"""The prediction log: what feedback can find in memory, and what goes to the store."""

from __future__ import annotations

import gc

from rollwise.domain import Role
from rollwise.runtime.predictions import MAX_CACHED_ROWS, PredictionLog, RecordsOf
from rollwise.store.base import PredictionRecord


def answer(
    request_id: str, version: str = "v1", role: Role = Role.SERVED, rows: int = 1
) -> PredictionRecord:
    return PredictionRecord(request_id, "iris", version, role, [0] * rows, 1.0)


def test_a_served_answer_and_its_shadows_are_found_together() -> None:
    log = PredictionLog(cache_size=10)
    log.remember(answer("r1"))
    log.remember(answer("r1", "v2", Role.SHADOW))
    found = log.recent("r1")
    assert found is not None
    assert [(r.version, r.role) for r in found] == [("v1", Role.SERVED), ("v2", Role.SHADOW)]
    assert log.recent("r2") is None


def test_the_cache_keeps_the_newest_ids() -> None:
    log = PredictionLog(cache_size=2)
    for request_id in ("a", "b", "c"):
        log.remember(answer(request_id))
    assert log.recent("a") is None
    assert log.recent("b") is not None and log.recent("c") is not None


def test_a_reused_id_keeps_one_entry_for_its_latest_request() -> None:
    log = PredictionLog(cache_size=10)
    for version in ("v1", "v2", "v3"):
        log.remember(answer("same", version))
    found = log.recent("same")
    assert found is not None and [r.version for r in found] == ["v3"]


def test_large_answers_go_to_the_store_only() -> None:
    log = PredictionLog(cache_size=10)
    log.remember(answer("big", rows=MAX_CACHED_ROWS + 1))
    assert log.recent("big") is None
    assert [r.request_id for r in RecordsOf(log.take_batch())] == ["big"]


def test_a_batch_the_store_refused_goes_out_first_next_time() -> None:
    log = PredictionLog(cache_size=0)
    log.remember(answer("a"))
    failed = log.take_batch()
    log.remember(answer("b"))
    log.give_back(failed)
    assert [r.request_id for r in RecordsOf(log.take_batch())] == ["a", "b"]
    assert log.take_batch() == []


def test_cached_answers_are_not_tracked_by_the_garbage_collector() -> None:
    log = PredictionLog(cache_size=10)
    log.remember(answer("r1"))
    # The collector untracks a tuple once its items are untracked: one level per pass.
    for _ in range(3):
        gc.collect()
    entry = log._recent["r1"]
    assert not gc.is_tracked(entry)


def test_answers_waiting_for_the_store_are_not_tracked_either() -> None:
    log = PredictionLog(cache_size=0)
    log.remember(answer("r1", rows=3))
    for _ in range(3):
        gc.collect()
    (pending,) = log._pending
    assert not gc.is_tracked(pending)
    (record,) = RecordsOf(log.take_batch())
    assert record == answer("r1", rows=3)
