"""Satisfaction: the ratings a feedback body may carry, their sums in the mergeable
windows, their estimate (the proportion's for thumbs), and their use in gates and A/B
tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from rollwise.analysis.evaluate import evaluate_gate
from rollwise.analysis.experiment import Outcome, decide_experiment
from rollwise.analysis.gates import Metric, parse_gate
from rollwise.analysis.summary import ArmSummary
from rollwise.analysis.verdict import Verdict
from rollwise.errors import ConfigError, ValidationError
from rollwise.metrics.recorder import VersionWindow
from rollwise.metrics.satisfaction import (
    NO_LABEL,
    parse_satisfaction,
    satisfaction_estimate,
    stored_label,
)
from rollwise.rollout.evidence import arm_summary
from rollwise.rollout.spec import parse_rollout_spec
from rollwise.runtime.late_labels import FeedbackSums
from rollwise.stats.proportions import proportion_estimate


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(True, 1.0, id="thumbs up"),
        pytest.param(False, 0.0, id="thumbs down"),
        pytest.param(0, 0.0, id="zero"),
        pytest.param(1, 1.0, id="one"),
        pytest.param(0.75, 0.75, id="a score"),
    ],
)
def test_parse_satisfaction(value: object, expected: float) -> None:
    assert parse_satisfaction(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(1.5, r"in \[0, 1\], got 1.5", id="above one"),
        pytest.param(-0.1, r"in \[0, 1\], got -0.1", id="below zero"),
        pytest.param(math.nan, "got nan", id="not a number"),
        pytest.param(math.inf, "got inf", id="infinite"),
        pytest.param("yes", "true/false .* got 'yes'", id="a string"),
        pytest.param(None, "got None", id="null"),
        pytest.param([1], r"got \[1\]", id="a list"),
    ],
)
def test_parse_satisfaction_refuses_naming_the_key(value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=f"'satisfaction' .*{message}"):
        parse_satisfaction(value)


def test_stored_label_keeps_a_label_alone_as_before_and_both_together() -> None:
    assert stored_label("cat", None) == "cat"
    assert stored_label(NO_LABEL, 1.0) == {"satisfaction": 1.0}
    assert stored_label(2, 0.5) == {"satisfaction": 0.5, "label": 2}


@given(st.integers(0, 2000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_for_thumbs_the_estimate_is_the_proportions(counts: tuple[int, int]) -> None:
    ups, n = counts
    mean = satisfaction_estimate(n, float(ups), float(ups))
    proportion = proportion_estimate(ups, n)
    assert mean.value == pytest.approx(proportion.value)
    assert mean.se == pytest.approx(proportion.se, abs=1e-12)
    assert mean.n_eff == proportion.n_eff


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=200))
def test_for_scores_the_estimate_is_the_mean_of_the_ratings_and_one_pseudo_pair(
    ratings: list[float],
) -> None:
    values = np.asarray(ratings)
    est = satisfaction_estimate(len(ratings), float(values.sum()), float((values**2).sum()))
    augmented = np.concatenate([values, [0.0, 1.0]])
    assert est.value == pytest.approx(augmented.mean())
    # scipy as the oracle: the standard error of the mean with the population variance.
    oracle = scipy_stats.sem(augmented, ddof=0)
    assert est.se == pytest.approx(oracle, abs=1e-9)
    assert 0.0 < est.value < 1.0 and est.se > 0.0


def test_the_estimate_never_has_a_zero_standard_error() -> None:
    assert satisfaction_estimate(50, 50.0, 50.0).se > 0
    assert satisfaction_estimate(50, 0.0, 0.0).se > 0
    assert satisfaction_estimate(0, 0.0, 0.0).value == 0.5


def _window(*ratings: float) -> VersionWindow:
    window = VersionWindow()
    for rating in ratings:
        sums = FeedbackSums(satisfaction=1, satisfaction_sum=rating)
        sums.satisfaction_sq_sum = rating * rating
        sums.add_to(window)
    return window


def test_windows_merge_and_round_trip_their_ratings() -> None:
    a, b = _window(1.0, 0.0, 0.5), _window(0.25)
    a.merge(b)
    assert (a.satisfaction, a.satisfaction_sum, a.satisfaction_sq_sum) == (4, 1.75, 1.3125)
    back = VersionWindow.from_payload(a.to_payload())
    assert (back.satisfaction, back.satisfaction_sum, back.satisfaction_sq_sum) == (4, 1.75, 1.3125)
    assert not back.empty
    assert back.summary()["satisfaction"] == pytest.approx(1.75 / 4)
    assert VersionWindow.from_payload(VersionWindow().to_payload()).empty


def test_a_ratings_only_window_reaches_the_arm_summary() -> None:
    arm = arm_summary(_window(1.0, 1.0, 0.0))
    assert (arm.satisfaction, arm.satisfaction_sum) == (3, 2.0)
    assert arm.satisfaction_mean == pytest.approx(2 / 3)
    assert ArmSummary.from_dict(arm.to_dict()) == arm


def _thumbs(n: int, ups: int) -> ArmSummary:
    return ArmSummary(satisfaction=n, satisfaction_sum=ups, satisfaction_sq_sum=ups)


@pytest.mark.parametrize(
    ("gate", "stable", "candidate", "verdict"),
    [
        pytest.param(
            {"metric": "satisfaction", "max_decrease": 0.05},
            _thumbs(4000, 3200),
            _thumbs(4000, 3220),
            Verdict.PASS,
            id="as satisfied as stable passes",
        ),
        pytest.param(
            {"metric": "satisfaction", "max_decrease": 0.05},
            _thumbs(4000, 3200),
            _thumbs(4000, 2400),
            Verdict.FAIL,
            id="far less satisfied fails",
        ),
        pytest.param(
            {"metric": "satisfaction", "min": 0.7},
            _thumbs(0, 0),
            _thumbs(50, 40),
            Verdict.INCONCLUSIVE,
            id="too few ratings is inconclusive",
        ),
        pytest.param(
            {"metric": "satisfaction", "min": 0.7, "min_samples": 10},
            _thumbs(0, 0),
            _thumbs(2000, 1900),
            Verdict.PASS,
            id="absolute bound on the candidate",
        ),
    ],
)
def test_satisfaction_gates(
    gate: dict[str, object], stable: ArmSummary, candidate: ArmSummary, verdict: Verdict
) -> None:
    assert evaluate_gate(parse_gate(gate), stable, candidate).verdict is verdict


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        pytest.param({"metric": "satisfaction", "max": 0.9}, "'max' does not fit", id="max"),
        pytest.param({"metric": "satisfaction", "min": 1.5}, r"share in \[0, 1\]", id="above 1"),
        pytest.param({"metric": "win_rate", "max_decrease": 0.1}, "absolute bound", id="relative"),
        pytest.param({"metric": "win_rate", "min": 2}, r"share in \[0, 1\]", id="win rate above 1"),
    ],
)
def test_satisfaction_and_win_rate_gates_refuse_bad_bounds(
    gate: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_gate(gate)


def test_a_win_rate_gate_judges_wins_over_decisive_verdicts() -> None:
    gate = parse_gate({"metric": "win_rate", "min": 0.5, "min_samples": 20})
    better = ArmSummary(shadow_judged=400, shadow_wins=300)
    worse = ArmSummary(shadow_judged=400, shadow_wins=100)
    assert evaluate_gate(gate, ArmSummary(), better).verdict is Verdict.PASS
    assert evaluate_gate(gate, ArmSummary(), worse).verdict is Verdict.FAIL
    assert evaluate_gate(gate, ArmSummary(), ArmSummary()).verdict is Verdict.INCONCLUSIVE


def test_an_ab_test_on_satisfaction_picks_the_better_version() -> None:
    decision = decide_experiment(
        Metric.SATISFACTION,
        _thumbs(1500, 900),
        _thumbs(1500, 1200),
        mde=0.05,
        samples_per_arm=2000,
    )
    assert decision.outcome is Outcome.CANDIDATE_BETTER
    assert decision.prob_candidate_better is not None and decision.prob_candidate_better > 0.99
    worse = decide_experiment(
        Metric.SATISFACTION, _thumbs(1500, 1200), _thumbs(1500, 900), mde=0.05, samples_per_arm=2000
    )
    assert worse.outcome is Outcome.STABLE_BETTER


def test_an_ab_spec_on_satisfaction_needs_no_baseline() -> None:
    spec = parse_rollout_spec(
        {
            "model": "chat",
            "candidate": "b",
            "strategy": "abtest",
            "abtest": {"split": 50, "metric": "satisfaction", "mde": 0.1},
        }
    )
    assert spec.steps[0].metric is Metric.SATISFACTION  # type: ignore[attr-defined]
