"""What ``rollwise status`` shows of a model's rollout: its summary and, while an
analysis waits, how much longer each undecided gate needs."""

from __future__ import annotations

from typing import Any

import pytest

from rollwise.rollouts import load
from rollwise.server.status_view import rollout_status
from rollwise.store.base import RolloutRow

SPEC = {
    "model": "iris",
    "candidate": "v2",
    "strategy": "canary",
    "canary": {"weights": [10]},
    "gates": [{"metric": "error_rate", "max_increase": 0.005}],
}
HORIZON = {"more": 200, "at_least": True, "expected_s": 100.0, "rate_per_s": 2.0, "why": ""}


def gate(verdict: str, **extra: Any) -> dict[str, Any]:
    return {"description": "error_rate at most 0.005 above stable", "verdict": verdict, **extra}


def row(phase: str, judgement: dict[str, Any] | None) -> RolloutRow:
    status = {
        "model": "iris",
        "stable": "v1",
        "candidate": "v2",
        "phase": phase,
        "started_s": 0.0,
        "judgement": judgement,
    }
    return RolloutRow("iris", phase, SPEC, status, 0.0, 0.0, revision=1, id=7)


@pytest.mark.parametrize(
    ("phase", "judgement", "waiting"),
    [
        pytest.param(
            "progressing",
            {"step": {"gates": [gate("inconclusive", horizon=HORIZON)]}},
            [{"gate": "error_rate at most 0.005 above stable", "horizon": HORIZON}],
            id="an undecided analysis gate with its horizon",
        ),
        pytest.param(
            "progressing",
            {"background": {"gates": [gate("inconclusive")]}},
            [{"gate": "error_rate at most 0.005 above stable", "horizon": None}],
            id="background gates when no analysis runs; figures without a horizon",
        ),
        pytest.param(
            "progressing",
            {"step": {"gates": [gate("pass")]}},
            [],
            id="a passing gate waits for nothing",
        ),
        pytest.param(
            "rolled_back",
            {"step": {"gates": [gate("inconclusive", horizon=HORIZON)]}},
            [],
            id="an ended rollout waits for nothing",
        ),
    ],
)
def test_a_rollout_s_status_lists_the_gates_it_waits_for(
    phase: str, judgement: dict[str, Any], waiting: list[dict[str, Any]]
) -> None:
    rollout = load(row(phase, judgement))
    shown = rollout_status(rollout)
    assert shown == {**rollout.summary(), "waiting": waiting}


def test_an_ab_test_in_progress_waits_for_its_planned_size() -> None:
    spec = {"model": "iris", "candidate": "v2", "strategy": "abtest"}
    spec["abtest"] = {"metric": "accuracy", "mde": 0.05}
    stored = row("progressing", None)
    status = {**stored.status, "experiment": {"metric": "accuracy", "horizon": HORIZON}}
    rollout = load(RolloutRow("iris", "progressing", spec, status, 0.0, 0.0, 1, 8))
    assert rollout_status(rollout)["waiting"] == [
        {"gate": "A/B test on accuracy, to its planned size", "horizon": HORIZON}
    ]
