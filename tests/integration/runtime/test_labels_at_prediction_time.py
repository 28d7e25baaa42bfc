"""A label counts toward the time its prediction was made, not the time it arrived.

Predictions are made under weights A, weights B take effect at T, and labels for both
sides of T arrive after T: the evidence of the step since T holds only the labels of
predictions made since T, also when they arrive long after the controller has folded
the step's first minutes away; status windows select labels by their predictions'
time, and the running totals of /metrics count every label once.

A real SQLite store, a gateway's telemetry and the controller on one injected clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path

import pytest

from rollwise.config import parse_config
from rollwise.controller import SETTLED_AFTER_S, Controller
from rollwise.domain import Role
from rollwise.metrics.recorder import windows_by_version
from rollwise.rollout import Phase, RolloutStatus
from rollwise.rollouts import Rollouts, load
from rollwise.runtime.context import Context
from rollwise.runtime.telemetry import Telemetry
from rollwise.store import Store, open_store
from rollwise.store.base import PredictionRecord

VERSIONS = {"v1": {"backend": "fake"}, "v2": {"backend": "fake"}}
CONFIG = {"models": {"iris": {"stable": "v1", "versions": VERSIONS}}}
START = 10_000.0
T = START + 10.0
"""When weights B take effect (the step's ``measure_since_s``)."""


class World:
    """A store, one replica's telemetry and a controller, all on ``clock``."""

    def __init__(self, tmp_path: Path) -> None:
        self.now = START
        config = parse_config(CONFIG, base_dir=tmp_path, environ={})
        self.store: Store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
        self.store.migrate()
        self.store.sync_models(list(config.models.values()), START)
        self.ctx = Context(
            config, store=self.store, clock=self.clock, rng=random.Random(0), replica="r"
        )
        self.telemetry = Telemetry(self.ctx)
        Rollouts(self.store, clock=self.clock).apply(
            {"model": "iris", "candidate": "v2", "strategy": "steps", "steps": [{"pause": {}}]},
            actor="test",
        )
        rollout = load(self.store.list_rollouts()[0])
        self.rollout_id = rollout.id
        self.status: RolloutStatus = dataclasses.replace(
            rollout.status, phase=Phase.PROGRESSING, weight=50, measure_since_s=T
        )
        self.controller = Controller(self.store, clock=self.clock, settle_s=0.0)

    def clock(self) -> float:
        return self.now

    def at(self, now: float) -> None:
        self.now = now

    def answer(self, request_id: str, version: str = "v2") -> None:
        self.telemetry.metrics.window("iris", version, Role.SERVED).record_call(
            5.0, failed=False, timed_out=False
        )
        self.telemetry.predictions.remember(
            PredictionRecord(request_id, "iris", version, Role.SERVED, [0], self.now)
        )

    def label(self, request_id: str, label: int) -> None:
        asyncio.run(self.telemetry.feedback("iris", request_id, label))

    def flush(self) -> None:
        asyncio.run(self.telemetry.flush())

    def evidence(self) -> tuple[int, int]:
        """(labels, correct) of v2 in the step, as the controller measures it."""
        windows = self.controller._measure(self.rollout_id, self.status, self.now)
        window = windows.get(("v2", Role.SERVED))
        return (window.feedback, window.correct) if window else (0, 0)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_labels_of_predictions_before_the_step_do_not_count_in_it(world: World) -> None:
    # Under weights A: three answers, all wrong by the labels that come later.
    world.at(START + 0.2)
    for n in range(3):
        world.answer(f"before-{n}")
    world.at(START + 1)
    world.flush()
    # Weights B take effect at T; two answers under them, right by their labels.
    world.at(T + 10.5)
    for n in range(2):
        world.answer(f"after-{n}")
    world.at(T + 11)
    world.flush()
    # All five labels arrive after T, in one window, with one for an answer of that
    # very window (which simply joins it).
    world.at(T + 20.2)
    world.answer("now")
    world.at(T + 20.4)
    for n in range(3):
        world.label(f"before-{n}", 1)
    for n in range(2):
        world.label(f"after-{n}", 0)
    world.label("now", 0)
    world.at(T + 21)
    world.flush()

    assert world.evidence() == (3, 3)


def test_a_late_label_is_found_after_the_step_start_was_folded_away(world: World) -> None:
    world.at(START + 0.5)
    world.answer("before")
    world.at(T + 5)
    world.flush()
    world.at(T + 5.5)
    world.answer("after")
    world.at(T + 6)
    world.flush()
    # The controller folds the first minutes of the step once and reads them no more.
    world.at(T + SETTLED_AFTER_S + 120)
    world.flush()
    assert world.evidence() == (0, 0)
    assert world.controller._sums[world.rollout_id].settled_until > T + 5
    # Both labels arrive minutes later; the gateway flushes every second meanwhile.
    world.at(world.now + 0.5)
    world.label("before", 0)
    world.label("after", 0)
    world.at(world.now + 0.5)
    world.flush()

    assert world.evidence() == (1, 1)
    world.at(world.now + SETTLED_AFTER_S + 60)
    world.flush()
    assert world.evidence() == (1, 1), "counted once when folded"


def test_status_windows_and_totals_count_labels_by_their_predictions(world: World) -> None:
    world.at(START + 0.5)
    world.answer("early")
    world.at(START + 1)
    world.flush()
    world.at(START + 100.5)
    world.answer("recent")
    world.at(START + 101)
    world.flush()
    world.at(START + 120)
    world.label("early", 0)
    world.label("recent", 0)

    async def labels_in_last(window_s: float) -> int:
        windows = await world.telemetry.version_metrics("iris", window_s)
        return windows[("v2", Role.SERVED)].feedback

    # Not flushed yet, then flushed: the same answer either way.
    for flushed in (False, True):
        if flushed:
            world.at(START + 121)
            world.flush()
        assert asyncio.run(labels_in_last(60.0)) == 1, flushed
        assert asyncio.run(labels_in_last(600.0)) == 2, flushed
        totals = {key: window.feedback for key, window in world.telemetry.totals()}
        assert totals[("iris", "v2", Role.SERVED)] == 2, flushed
    stored = world.store.read_metric_buckets("iris", START)
    assert (
        windows_by_version((b.version, b.role, b.payload) for b in stored)[
            ("v2", Role.SERVED)
        ].feedback
        == 2
    )
