"""The A/B ``experiment`` step: plan its length, then decide when it may stop.

Planning (:func:`plan_experiment`): from the stable version's baseline (a rate, or a
standard deviation for means), the minimum detectable effect, ``alpha`` and power, the
samples per arm for the sequential test (:mod:`rollwise.stats.power`) and, given the
traffic, how long that takes. That sample size is the experiment's horizon: the
confidence sequence is tuned to it. A rate stays within (0, 1), so from a baseline near
one end an effect of ``mde`` is possible in one direction only; the plan is then made
for that direction and its ``note`` says so.

Deciding (:func:`decide_experiment`), at every controller tick, with a two-sided
confidence sequence for the effect (candidate minus stable) at level ``1 - alpha``:

* SRM mismatch → ``invalid`` (stop; promote nothing);
* interval wholly on the better side of zero → ``candidate_better``; wholly on the
  worse side → ``stable_better``;
* interval wholly inside ``(-mde, +mde)`` → ``no_difference`` (any effect is smaller than
  the one the test was planned to find: an equivalence conclusion);
* every arm has reached the planned sample size and the interval is still wider than
  ``±mde`` → ``inconclusive`` (the data neither show an effect nor rule out one of
  ``mde``: calling that "no difference" would claim more than the evidence says);
* otherwise ``continue``.

The Bayesian chance that the candidate is better is reported alongside for people; it
does not drive the decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from rollwise.analysis.evaluate import arm_estimate
from rollwise.analysis.gates import Metric
from rollwise.analysis.judge import check_srm
from rollwise.analysis.summary import ArmSummary
from rollwise.stats import bayes
from rollwise.stats import power as planning
from rollwise.stats import sequential as seq
from rollwise.stats.estimates import difference
from rollwise.stats.results import Interval, check_alpha
from rollwise.stats.srm import SrmResult

EXPERIMENT_METRICS = (
    Metric.ERROR_RATE,
    Metric.ACCURACY,
    Metric.MAE,
    Metric.RMSE,
    Metric.REWARD,
    Metric.LATENCY_MEAN,
    Metric.SATISFACTION,
)
_PROPORTIONS = (Metric.ERROR_RATE, Metric.ACCURACY)


class Outcome(StrEnum):
    CONTINUE = "continue"
    CANDIDATE_BETTER = "candidate_better"
    STABLE_BETTER = "stable_better"
    NO_DIFFERENCE = "no_difference"
    """Equivalent within ``mde``: the interval lies inside ``(-mde, +mde)``."""
    INCONCLUSIVE = "inconclusive"
    """The planned size is reached and the interval still straddles ``±mde``."""
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class ExperimentPlan:
    """Samples per arm the experiment needs, and the time that takes at the given traffic."""

    metric: Metric
    mde: float
    alpha: float
    power: float
    split_percent: int
    samples: planning.SampleSize
    fixed_samples: planning.SampleSize
    duration_s: float | None
    effect: float = 0.0
    """The signed effect planned for (``+mde`` or, where a rate cannot rise by it, ``-mde``)."""
    note: str = ""
    """Anything the plan had to assume, in one sentence for people; empty when nothing."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric.value,
            "mde": self.mde,
            "effect": self.effect,
            "note": self.note,
            "alpha": self.alpha,
            "power": self.power,
            "split_percent": self.split_percent,
            "n_per_arm": self.samples.n_treatment,
            "fixed_horizon_n_per_arm": self.fixed_samples.n_treatment,
            "duration_s": self.duration_s,
        }


def _check_metric(metric: Metric) -> None:
    if metric not in EXPERIMENT_METRICS:
        names = ", ".join(m.value for m in EXPERIMENT_METRICS)
        raise ValueError(f"experiments compare one of {names}; got {metric.value}")


def plan_experiment(
    metric: Metric,
    *,
    baseline: float,
    mde: float,
    alpha: float = 0.05,
    power: float = 0.8,
    split_percent: int = 50,
    requests_per_s: float | None = None,
) -> ExperimentPlan:
    """Plan a test of ``metric``: ``baseline`` is the stable rate for proportions and the
    standard deviation of one observation for means; ``mde`` is in the metric's unit.

    The plan assumes a balanced split for the sample size; with an unbalanced
    ``split_percent`` the duration is that of the smaller arm reaching it.
    """
    _check_metric(metric)
    check_alpha(alpha)
    if not 0 < split_percent < 100:
        raise ValueError(f"split_percent must be in (0, 100), got {split_percent}")
    if not mde > 0:
        raise ValueError(f"mde must be > 0 (a magnitude), got {mde}")
    effect, note = mde, ""
    if metric in _PROPORTIONS:
        effect = planning.two_sided_difference(baseline, mde)
        if effect < 0:
            note = (
                f"a rate cannot exceed 1, so from a baseline of {baseline:g} an increase "
                f"of {mde:g} cannot happen: planned to find a decrease of {mde:g} "
                f"(to {baseline - mde:g})"
            )
        samples = planning.sequential_sample_size_proportions(
            baseline, effect, alpha=alpha, power=power
        )
        fixed = planning.sample_size_proportions(baseline, effect, alpha=alpha, power=power)
    else:
        samples = planning.sequential_sample_size_means(baseline, mde, alpha=alpha, power=power)
        fixed = planning.sample_size_means(baseline, mde, alpha=alpha, power=power)
    duration = (
        samples.duration_s(requests_per_s, split_percent) if requests_per_s is not None else None
    )
    return ExperimentPlan(
        metric, mde, alpha, power, split_percent, samples, fixed, duration, effect, note
    )


@dataclass(frozen=True, slots=True)
class ExperimentDecision:
    """What the experiment step should do now, and the figures behind it."""

    outcome: Outcome
    reason: str
    estimate: float | None = None
    interval: Interval | None = None
    p_value: float | None = None
    prob_candidate_better: float | None = None
    n_stable: int = 0
    n_candidate: int = 0
    progress: float = 0.0
    srm: SrmResult | None = None

    @property
    def done(self) -> bool:
        return self.outcome is not Outcome.CONTINUE

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "reason": self.reason,
            "estimate": self.estimate,
            "interval": self.interval.to_dict() if self.interval else None,
            "p_value": self.p_value,
            "prob_candidate_better": self.prob_candidate_better,
            "n_stable": self.n_stable,
            "n_candidate": self.n_candidate,
            "progress": self.progress,
            "srm": self.srm.to_dict() if self.srm else None,
        }


def decide_experiment(
    metric: Metric,
    stable: ArmSummary,
    candidate: ArmSummary,
    *,
    mde: float,
    samples_per_arm: int,
    alpha: float = 0.05,
    weights_percent: tuple[int, int] | None = None,
    min_samples: int = 100,
    srm_counts: tuple[int, int] | None = None,
) -> ExperimentDecision:
    """The decision of an A/B experiment at this tick (rule in the module docstring)."""
    _check_metric(metric)
    check_alpha(alpha)
    if not mde > 0:
        raise ValueError(f"mde must be > 0 (a magnitude), got {mde}")
    srm = (
        check_srm(stable, candidate, weights_percent, counts=srm_counts)
        if weights_percent
        else None
    )
    s, c = arm_estimate(metric, stable), arm_estimate(metric, candidate)
    progress = min(1.0, min(s.n, c.n) / samples_per_arm) if samples_per_arm > 0 else 1.0

    def early(outcome: Outcome, reason: str) -> ExperimentDecision:
        return ExperimentDecision(
            outcome, reason, n_stable=s.n, n_candidate=c.n, progress=progress, srm=srm
        )

    if srm is not None and srm.mismatch:
        return early(Outcome.INVALID, "sample ratio mismatch")
    if min(s.n, c.n) < min_samples or s.estimate is None or c.estimate is None:
        return early(
            Outcome.CONTINUE,
            f"collecting data: {min(s.n, c.n)} of {min_samples} samples per arm",
        )
    est = difference(s.estimate, c.estimate)
    result = seq.sequential_test(
        est, alpha=alpha, horizon=float(samples_per_arm), n_control=s.n, n_treatment=c.n
    )
    interval = result.interval
    prob = _prob_better(metric, stable, candidate)

    def decided(outcome: Outcome, reason: str) -> ExperimentDecision:
        return ExperimentDecision(
            outcome,
            reason,
            estimate=est.value,
            interval=interval,
            p_value=result.p_value,
            prob_candidate_better=prob,
            n_stable=s.n,
            n_candidate=c.n,
            progress=progress,
            srm=srm,
        )

    shown = f"[{interval.low:.4g}, {interval.high:.4g}]"
    if result.reject:
        better = (est.value > 0) == metric.higher_is_better
        outcome = Outcome.CANDIDATE_BETTER if better else Outcome.STABLE_BETTER
        return decided(
            outcome, f"candidate - stable = {est.value:.4g}, interval {shown} excludes 0"
        )
    if -mde < interval.low and interval.high < mde:
        return decided(
            Outcome.NO_DIFFERENCE,
            f"interval {shown} lies within ±{mde:g}: any effect is smaller than {mde:g}",
        )
    if progress >= 1.0:
        return decided(
            Outcome.INCONCLUSIVE,
            f"{samples_per_arm} samples per arm reached and the interval {shown} includes 0 "
            f"but is wider than ±{mde:g}",
        )
    return decided(Outcome.CONTINUE, f"undecided at {progress:.0%} of the planned samples")


def _prob_better(metric: Metric, stable: ArmSummary, candidate: ArmSummary) -> float | None:
    if metric is Metric.ERROR_RATE:
        r = bayes.beta_binomial(
            stable.errors,
            stable.requests,
            candidate.errors,
            candidate.requests,
            higher_is_better=False,
        )
        return r.prob_better
    if metric is Metric.ACCURACY:
        return bayes.beta_binomial(
            stable.correct, stable.feedback, candidate.correct, candidate.feedback
        ).prob_better
    s, c = arm_estimate(metric, stable), arm_estimate(metric, candidate)
    if s.estimate is None or c.estimate is None or s.n < 2 or c.n < 2:
        return None
    r2 = bayes.normal_means(
        s.n,
        s.estimate.value,
        s.estimate.unit_variance,
        c.n,
        c.estimate.value,
        c.estimate.unit_variance,
        higher_is_better=metric.higher_is_better,
    )
    return None if math.isnan(r2.prob_better) else r2.prob_better
