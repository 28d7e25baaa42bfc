"""The live view of a rollout says where it is, and where it ended."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from rollwise.views import horizon_text, rollout_view, waiting_lines

PLAN = [f"step text {i}" for i in range(1, 11)]


def rollout(phase: str, step_index: int) -> dict[str, Any]:
    return {
        "model": "iris",
        "strategy": "canary",
        "plan_text": PLAN,
        "status": {
            "phase": phase,
            "step_index": step_index,
            "stable": "v1",
            "candidate": "v2",
            "weight": 30,
            "mirror": 0,
            "message": "",
            "judgement": None,
            "experiment": None,
        },
    }


def shown(data: dict[str, Any]) -> str:
    console = Console(width=200, record=True)
    console.print(rollout_view(data))
    return console.export_text()


@pytest.mark.parametrize(
    ("phase", "step_index", "expected"),
    [
        pytest.param("progressing", 2, "step 3/10: step text 3", id="in progress"),
        pytest.param("rolled_back", 2, "ended at step 3/10", id="rolled back at step 3"),
        pytest.param("failed", 0, "ended at step 1/10", id="failed at the first step"),
        pytest.param("promoted", 10, "10/10 steps", id="promoted after every step"),
    ],
)
def test_the_step_shown_is_where_the_rollout_is_or_ended(
    phase: str, step_index: int, expected: str
) -> None:
    text = shown(rollout(phase, step_index))
    assert expected in text
    if phase == "rolled_back":
        assert "10/10" not in text


@pytest.mark.parametrize(
    ("phase", "words"),
    [
        pytest.param("no_difference", "no difference", id="an A/B test found no difference"),
        pytest.param("inconclusive", "inconclusive", id="an A/B test ended undecided"),
    ],
)
def test_an_ab_test_without_a_winner_is_named_so_and_shows_stable_serving_everyone(
    phase: str, words: str
) -> None:
    data = rollout(phase, 0)
    data["status"]["weight"] = 0
    text = shown(data)
    assert f"v1 → v2  {words}" in text
    assert "weights: v1 100 %" in text and "v2 0 %" not in text
    assert "rolled back" not in text


HORIZON = {"more": 200, "at_least": True, "expected_s": 100.0, "rate_per_s": 2.0, "why": ""}


@pytest.mark.parametrize(
    ("horizon", "text"),
    [
        pytest.param(
            HORIZON,
            "needs at least 200 more samples (~100 s at the current rate)",
            id="short of min_samples: at least",
        ),
        pytest.param(
            {**HORIZON, "more": 5400, "at_least": False, "expected_s": 2700.0},
            "needs ~5,400 more samples (~45 min at the current rate)",
            id="undecided: about",
        ),
        pytest.param(
            {**HORIZON, "expected_s": None, "rate_per_s": 0.0},
            "needs at least 200 more samples (none arrived yet, so no expected time)",
            id="no samples so far",
        ),
        pytest.param(
            {"more": None, "why": "the estimate sits on the bound"},
            "cannot tell how many more samples it needs (the estimate sits on the bound)",
            id="cannot tell",
        ),
    ],
)
def test_a_gate_s_horizon_in_words(horizon: dict[str, Any], text: str) -> None:
    assert horizon_text(horizon) == text


def test_watch_shows_how_much_longer_each_undecided_gate_needs() -> None:
    data = rollout("progressing", 2)
    gate = {"description": "error_rate at most 0.005 above stable", "verdict": "inconclusive"}
    data["status"]["judgement"] = {"step": {"gates": [{**gate, "horizon": HORIZON}]}}
    assert "needs at least 200 more samples (~100 s" in shown(data)


def test_status_lists_each_waiting_gate_with_its_horizon() -> None:
    waiting = [
        {"gate": "error_rate at most 0.005 above stable", "horizon": HORIZON},
        {"gate": "latency_p99_ms at most 1.1 times stable", "horizon": None},
    ]
    assert waiting_lines(waiting) == [
        "error_rate at most 0.005 above stable: needs at least 200 more samples "
        "(~100 s at the current rate)",
        "latency_p99_ms at most 1.1 times stable: undecided",
    ]


def test_watch_shows_how_much_longer_an_ab_test_may_take() -> None:
    data = rollout("progressing", 0)
    decision = {"outcome": "continue", "n_stable": 700, "n_candidate": 300}
    horizon = {**HORIZON, "more": 5000, "at_least": False, "expected_s": 1000.0}
    data["status"]["experiment"] = {
        "samples_per_arm": 5300,
        "decision": decision,
        "horizon": horizon,
    }
    text = shown(data)
    assert "A/B test: needs ~5,000 more samples (~16 min at the current rate) to its planned" in (
        text
    )
