"""The controller's running sums of a step's metrics equal reading every bucket again."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from rollwise.controller import SETTLED_AFTER_S, Controller
from rollwise.domain import ModelSpec, Role, VersionSpec
from rollwise.metrics.recorder import VersionWindow, windows_by_version
from rollwise.rollout import Phase
from rollwise.rollouts import Rollouts, load
from rollwise.store import Store, open_store
from rollwise.store.base import MetricBucketRow


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = open_store(f"sqlite:///{tmp_path}/measure.db")
    opened.migrate()
    versions = {v: VersionSpec(v, "fake") for v in ("v1", "v2")}
    opened.sync_models([ModelSpec("iris", "v1", versions)], 0.0)
    return opened


def payload(rng: random.Random, requests: int) -> dict[str, object]:
    window = VersionWindow()
    for _ in range(requests):
        window.record_call(rng.uniform(1, 50), failed=rng.random() < 0.1, timed_out=False)
    window.feedback = requests
    window.correct = rng.randrange(requests + 1)
    return window.to_payload()


def summary(windows: dict[tuple[str, Role], VersionWindow]) -> dict[str, object]:
    """Flat figures per version; float sums are rounded, since their order of addition
    differs between the two ways of summing."""
    flat: dict[str, object] = {}
    for (version, role), window in sorted(windows.items()):
        for name, value in window.to_payload().items():
            key = f"{version}/{role.value}/{name}"
            flat[key] = round(value, 6) if isinstance(value, float) else value
    return flat


def test_the_running_sums_match_a_full_read_at_every_tick(store: Store) -> None:
    clock = [10_000.0]
    Rollouts(store, clock=lambda: clock[0]).apply(
        {"model": "iris", "candidate": "v2", "strategy": "steps", "steps": [{"set_weight": 10}]},
        actor="test",
    )
    rollout = load(store.list_rollouts()[0])
    status = dataclasses.replace(rollout.status, phase=Phase.PROGRESSING, weight=10)
    controller = Controller(store, clock=lambda: clock[0], settle_s=2.0)
    rng = random.Random(5)
    since = int(status.measure_since_s + 2.0)
    folded_at_least_once = False
    for second in range(int(SETTLED_AFTER_S) + 120):
        clock[0] += 1.0
        start_s = int(clock[0]) - 1
        # Two replicas, one of which misses a bucket now and then.
        rows = [MetricBucketRow("iris", "v1", Role.SERVED, start_s, 1, "a", payload(rng, 9))]
        if second % 7:
            rows.append(
                MetricBucketRow("iris", "v2", Role.SERVED, start_s, 1, "b", payload(rng, 2))
            )
        store.write_metric_buckets(rows)
        if second % 5:
            continue
        measured = controller._measure(rollout.id, status, clock[0])
        everything = store.read_metric_buckets("iris", since)
        expected = windows_by_version((b.version, b.role, b.payload) for b in everything)
        assert summary(measured) == summary(expected), f"tick {second}"
        folded_at_least_once |= controller._sums[rollout.id].settled_until > since
    assert folded_at_least_once


def test_a_new_step_starts_its_sums_afresh(store: Store) -> None:
    clock = [20_000.0]
    Rollouts(store, clock=lambda: clock[0]).apply(
        {"model": "iris", "candidate": "v2", "strategy": "steps", "steps": [{"set_weight": 10}]},
        actor="test",
    )
    rollout = load(store.list_rollouts()[0])
    status = dataclasses.replace(rollout.status, phase=Phase.PROGRESSING, weight=10)
    controller = Controller(store, clock=lambda: clock[0], settle_s=0.0)
    rng = random.Random(6)
    rows = [
        MetricBucketRow("iris", "v2", Role.SERVED, int(clock[0]) + s, 1, "a", payload(rng, 3))
        for s in range(int(SETTLED_AFTER_S) + 60)
    ]
    store.write_metric_buckets(rows)
    clock[0] += SETTLED_AFTER_S + 70
    before = controller._measure(rollout.id, status, clock[0])
    assert before[("v2", Role.SERVED)].requests == 3 * (int(SETTLED_AFTER_S) + 60)
    later = dataclasses.replace(status, measure_since_s=status.measure_since_s + 100)
    after = controller._measure(rollout.id, later, clock[0])
    assert after[("v2", Role.SERVED)].requests == 3 * (int(SETTLED_AFTER_S) + 60 - 100)
