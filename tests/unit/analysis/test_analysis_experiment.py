"""The A/B experiment step: planning and stopping decisions."""

from __future__ import annotations

import math

import pytest
from statsmodels.stats.proportion import samplesize_proportions_2indep_onetail

from rollwise.analysis.experiment import Outcome, decide_experiment, plan_experiment
from rollwise.analysis.gates import Metric
from rollwise.analysis.summary import ArmSummary
from rollwise.stats.power import sample_size_proportions, sequential_sample_size_proportions


def _arm(n: int, correct: int) -> ArmSummary:
    return ArmSummary(requests=n, feedback=n, correct=correct)


def test_plan_gives_samples_and_duration() -> None:
    plan = plan_experiment(
        Metric.ACCURACY, baseline=0.8, mde=0.02, split_percent=50, requests_per_s=20.0
    )
    fixed = sample_size_proportions(0.8, 0.02)
    assert plan.fixed_samples == fixed
    assert plan.samples.n_treatment > fixed.n_treatment
    assert plan.duration_s == pytest.approx(plan.samples.n_treatment / 10.0)
    assert plan.to_dict()["n_per_arm"] == plan.samples.n_treatment
    means = plan_experiment(Metric.REWARD, baseline=2.0, mde=0.1)
    assert means.duration_s is None and means.samples.n_control > 0


def test_plan_refuses_metrics_without_an_effect() -> None:
    with pytest.raises(ValueError, match="experiments compare"):
        plan_experiment(Metric.DRIFT_PSI, baseline=0.1, mde=0.01)


@pytest.mark.parametrize(
    ("stable", "candidate", "samples", "outcome"),
    [
        pytest.param(_arm(50, 40), _arm(50, 45), 10_000, Outcome.CONTINUE, id="too early"),
        pytest.param(
            _arm(20_000, 16_000),
            _arm(20_000, 16_800),
            30_000,
            Outcome.CANDIDATE_BETTER,
            id="candidate four points better",
        ),
        pytest.param(
            _arm(20_000, 16_000),
            _arm(20_000, 15_000),
            30_000,
            Outcome.STABLE_BETTER,
            id="candidate five points worse",
        ),
        pytest.param(
            _arm(60_000, 48_000),
            _arm(60_000, 48_030),
            200_000,
            Outcome.NO_DIFFERENCE,
            id="interval inside the minimum effect",
        ),
        pytest.param(
            _arm(5_000, 4_000),
            _arm(5_000, 4_030),
            5_000,
            Outcome.INCONCLUSIVE,
            id="planned samples reached with an interval wider than the minimum effect",
        ),
        pytest.param(
            _arm(5_000, 4_000),
            _arm(5_000, 4_030),
            50_000,
            Outcome.CONTINUE,
            id="undecided midway",
        ),
    ],
)
def test_decisions(
    stable: ArmSummary, candidate: ArmSummary, samples: int, outcome: Outcome
) -> None:
    decision = decide_experiment(
        Metric.ACCURACY, stable, candidate, mde=0.02, samples_per_arm=samples
    )
    assert decision.outcome is outcome, decision.reason
    assert decision.done is (outcome is not Outcome.CONTINUE)


def test_error_rate_lower_is_better_and_bayes_is_reported() -> None:
    stable = ArmSummary(requests=20_000, errors=400)
    candidate = ArmSummary(requests=20_000, errors=200)
    decision = decide_experiment(
        Metric.ERROR_RATE, stable, candidate, mde=0.005, samples_per_arm=50_000
    )
    assert decision.outcome is Outcome.CANDIDATE_BETTER
    assert decision.prob_candidate_better is not None and decision.prob_candidate_better > 0.99
    assert decision.to_dict()["outcome"] == "candidate_better"


def test_sample_ratio_mismatch_invalidates_the_experiment() -> None:
    decision = decide_experiment(
        Metric.ACCURACY,
        _arm(20_000, 16_000),
        _arm(15_000, 12_800),
        mde=0.02,
        samples_per_arm=30_000,
        weights_percent=(50, 50),
    )
    assert decision.outcome is Outcome.INVALID
    assert decision.srm is not None and decision.srm.mismatch


@pytest.mark.parametrize(
    ("baseline", "mde", "planned", "note"),
    [
        pytest.param(0.8, 0.05, 0.05, "", id="both directions possible: plans the increase"),
        pytest.param(0.95, 0.1, -0.1, "decrease of 0.1", id="0.95 + 0.1 > 1: plans the decrease"),
        pytest.param(0.9, 0.1, -0.1, "decrease of 0.1", id="0.9 + 0.1 = 1: plans the decrease"),
        pytest.param(0.05, 0.1, 0.1, "", id="0.05 - 0.1 < 0: the increase is possible"),
    ],
)
def test_a_two_sided_plan_of_a_rate_takes_the_direction_that_is_possible(
    baseline: float, mde: float, planned: float, note: str
) -> None:
    plan = plan_experiment(Metric.ERROR_RATE, baseline=baseline, mde=mde)
    # statsmodels sizes the fixed-horizon test by the same normal approximation.
    oracle = samplesize_proportions_2indep_onetail(
        planned, baseline, 0.8, ratio=1.0, alpha=0.05, alternative="two-sided"
    )
    assert plan.fixed_samples.n_treatment == math.ceil(oracle)
    assert plan.samples == sequential_sample_size_proportions(baseline, planned)
    assert plan.effect == pytest.approx(planned)
    assert (note in plan.note) if note else plan.note == ""
    assert plan.to_dict()["note"] == plan.note


def test_a_rate_plan_impossible_in_both_directions_is_refused_naming_the_values() -> None:
    with pytest.raises(ValueError, match=r"0\.6 from a baseline rate of 0\.5.*below 0\.5"):
        plan_experiment(Metric.ACCURACY, baseline=0.5, mde=0.6)


def test_the_planned_size_with_an_interval_inside_the_minimum_effect_is_no_difference() -> None:
    decision = decide_experiment(
        Metric.ACCURACY,
        _arm(60_000, 48_000),
        _arm(60_000, 48_030),
        mde=0.02,
        samples_per_arm=60_000,
    )
    assert decision.outcome is Outcome.NO_DIFFERENCE
    assert "within ±0.02" in decision.reason


def test_the_planned_size_with_a_wide_interval_is_inconclusive_not_no_difference() -> None:
    decision = decide_experiment(
        Metric.ACCURACY, _arm(5_000, 4_000), _arm(5_000, 4_030), mde=0.02, samples_per_arm=5_000
    )
    assert decision.outcome is Outcome.INCONCLUSIVE
    assert decision.interval is not None
    assert decision.interval.high - decision.interval.low > 2 * 0.02
    assert "5000 samples per arm reached" in decision.reason
    assert "wider than ±0.02" in decision.reason
