"""A dry run's plan: steps in words, an A/B test's samples per arm and expected time."""

from __future__ import annotations

from typing import Any

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


def canary(gates: list[dict[str, Any]], **rollback: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "candidate": "v2",
        "strategy": "canary",
        "canary": {"weights": [10], "pause_s": 60},
        "gates": gates,
        **({"rollback": rollback} if rollback else {}),
    }


ERRORS = {"metric": "error_rate", "max_increase": 0.005}


@pytest.mark.parametrize(
    ("spec", "requests_per_s", "labels_per_s", "samples", "arm_rate", "held_s", "limit_s"),
    [
        pytest.param(
            canary([ERRORS]),
            10.0,
            0.0,
            100,
            1.0,
            60.0,
            900.0,
            id="a canary at 10 %: the candidate's share of requests; the pause counts",
        ),
        pytest.param(
            canary([{**ERRORS, "min_samples": 300}], on_inconclusive_after_s=120),
            10.0,
            0.0,
            300,
            1.0,
            60.0,
            120.0,
            id="its own min_samples and the policy's limit",
        ),
        pytest.param(
            canary([{"metric": "accuracy", "max_decrease": 0.02}]),
            10.0,
            2.0,
            100,
            0.2,
            60.0,
            900.0,
            id="accuracy counts labels",
        ),
        pytest.param(
            canary([{"metric": "latency_p99_ms", "max_ratio": 1.1}]),
            10.0,
            0.0,
            1000,
            1.0,
            60.0,
            900.0,
            id="p99 needs ten latencies beyond it",
        ),
        pytest.param(
            canary([{"metric": "error_rate", "max": 0.02}]),
            10.0,
            0.0,
            100,
            1.0,
            60.0,
            900.0,
            id="an absolute bound counts the candidate alone",
        ),
        pytest.param(
            {
                "model": "m",
                "candidate": "v2",
                "strategy": "shadow",
                "shadow": {"mirror": 50, "max_duration_s": 300},
                "gates": [{"metric": "shadow_agreement", "min": 0.9}],
            },
            10.0,
            0.0,
            100,
            5.0,
            0.0,
            300.0,
            id="a shadow counts mirrored requests, within its own limit",
        ),
    ],
)
def test_an_analysis_shows_what_its_gates_need_and_when_at_the_current_traffic(
    spec: dict[str, Any],
    requests_per_s: float,
    labels_per_s: float,
    samples: int,
    arm_rate: float,
    held_s: float,
    limit_s: float,
) -> None:
    parsed = parse_rollout_spec(spec)
    plan = preview_steps(parsed, requests_per_s, labels_per_s)
    [entry] = [e for e in plan if "gates" in e]
    [gate] = entry["gates"]
    assert (gate["samples"], gate["rate_per_s"]) == (samples, pytest.approx(arm_rate))
    assert gate["expected_s"] == pytest.approx(samples / arm_rate)
    assert (entry["held_s"], entry["limit_s"]) == (held_s, limit_s)
    assert entry["expected_s"] == pytest.approx(samples / arm_rate)
    assert entry["late"] is (samples / arm_rate > held_s + limit_s)


def test_a_dry_run_warns_when_min_samples_come_after_the_analysis_gives_up() -> None:
    # 0.5 request/s to the candidate: 100 samples take 200 s, the analysis gives up at
    # 60 + 120 s and rolls back even a good candidate.
    plan = preview_steps(parse_rollout_spec(canary([ERRORS], on_inconclusive_after_s=120)), 5.0, 0)
    [entry] = [e for e in plan if "gates" in e]
    assert entry["late"] is True
    lines = "\n".join(plan_lines({"plan": plan, "rate_window_s": 300.0}))
    assert "error_rate at most 0.005 above stable: 100 samples per version" in lines
    assert "3. analyze 1 gate — gives up undecided after 120 s and rolls back" in lines
    assert "about 3 min at 0.5/s" in lines
    assert "warning: min_samples take about 3 min at the traffic (the last 300 s)" in lines
    assert "more than the 180 s (60 s of pause before it + 120 s) this analysis has" in lines
    assert "even a good candidate would be rolled back" in lines
    assert "raise rollback.on_inconclusive_after_s" in lines


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        pytest.param(canary([ERRORS]), "no traffic seen lately", id="no traffic"),
        pytest.param(
            {
                "model": "m",
                "candidate": "v2",
                "strategy": "bluegreen",
                "bluegreen": {"analysis_max_s": 120},
                "gates": [ERRORS],
            },
            "only preview requests reach the candidate",
            id="a blue-green preview without mirroring",
        ),
    ],
)
def test_without_a_rate_an_analysis_has_no_expected_time_and_says_why(
    spec: dict[str, Any], why: str
) -> None:
    plan = preview_steps(parse_rollout_spec(spec), 0.0 if "canary" in spec else 10.0, 0.0)
    [entry] = [e for e in plan if "gates" in e]
    assert entry["expected_s"] is None and entry["late"] is False
    assert why in "\n".join(plan_lines({"plan": plan, "rate_window_s": 300.0}))


def test_an_ab_plan_that_had_to_pick_a_direction_says_so_in_the_dry_run() -> None:
    spec = abtest("error_rate")
    spec["abtest"] = {"metric": "accuracy", "mde": 0.1, "baseline": 0.95}
    plan = preview_steps(parse_rollout_spec(spec), 10.0, 10.0)
    assert "decrease of 0.1" in plan[0]["note"]
    assert "decrease of 0.1" in plan_lines({"plan": plan, "rate_window_s": 300.0})[0]
