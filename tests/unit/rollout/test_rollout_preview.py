"""A dry run's plan: steps in words, an A/B test's samples per arm and expected time."""

from __future__ import annotations

import pytest

from rollwise.cli.rollouts import plan_lines
from rollwise.rollout import parse_rollout_spec
from rollwise.rollout.preview import preview_steps, traffic_rates
from rollwise.rollout.spec import planned_samples
from rollwise.rollout.steps import Experiment


def abtest(metric: str, split: int = 50) -> dict[str, object]:
    return {
        "model": "m",
        "candidate": "v2",
        "strategy": "abtest",
        "abtest": {"metric": metric, "mde": 0.05, "split": split},
    }


@pytest.mark.parametrize(
    ("metric", "split", "requests_per_s", "labels_per_s", "arm_rate"),
    [
        pytest.param("accuracy", 50, 100.0, 20.0, 10.0, id="accuracy counts labels"),
        pytest.param("error_rate", 50, 100.0, 20.0, 50.0, id="error rate counts requests"),
        pytest.param("error_rate", 20, 100.0, 0.0, 20.0, id="the smaller arm decides"),
    ],
)
def test_the_expected_time_is_the_plan_over_the_smaller_arm_s_rate(
    metric: str, split: int, requests_per_s: float, labels_per_s: float, arm_rate: float
) -> None:
    spec = parse_rollout_spec(abtest(metric, split))
    [entry] = preview_steps(spec, requests_per_s, labels_per_s)
    step = spec.steps[0]
    assert isinstance(step, Experiment)
    assert entry["samples_per_arm"] == planned_samples(step)
    assert entry["expected_s"] == pytest.approx(planned_samples(step) / arm_rate)


def test_without_traffic_there_is_no_expected_time_and_the_line_says_so() -> None:
    spec = parse_rollout_spec(abtest("accuracy"))
    plan = preview_steps(spec, 0.0, 0.0)
    assert plan[0]["expected_s"] is None
    [line] = plan_lines({"plan": plan, "rate_window_s": 300.0})
    assert "samples per arm" in line and "no traffic seen lately" in line


def test_traffic_rates_add_every_version() -> None:
    assert traffic_rates({"v1": (600, 30), "v2": (300, 0)}, 300.0) == (3.0, 0.1)
