"""The live view of a rollout says where it is, and where it ended."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from rollwise.views import rollout_view

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
