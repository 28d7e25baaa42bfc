"""Judge one gate: pure function from two arm summaries to a :class:`GateResult`.

Steps:

1. Each arm's metric becomes an estimate with a standard error
   (:func:`arm_estimate`): proportions with one pseudo success and failure (Agresti-Caffo),
   means from sums and sums of squares, RMSE by the delta method from ``Σe²`` and ``Σe⁴``,
   latency quantiles by Woodruff's method on the histogram, PSI by the delta method.
2. The two arms are combined on the bound's scale: a difference for
   ``max_increase``/``max_decrease``, a log ratio for ``*_ratio``, the candidate alone for
   absolute bounds. ``limit`` is the bound on that scale.
3. Two one-sided tests at level ``alpha`` decide: *fail* when the data reject "the
   candidate is within the bound", *pass* when they reject "the candidate breaks the
   bound", *inconclusive* otherwise. Equivalently, with the interval whose ends are
   one-sided ``alpha`` bounds: fail if it lies wholly beyond the limit, pass if wholly
   within. This is the non-inferiority logic of clinical trials (ICH E9 §3.3.2;
   Wellek, *Testing Statistical Hypotheses of Equivalence and Noninferiority*, 2nd ed.)
   applied to canaries, so that a pass needs evidence and not just the absence of harm.
4. With too few samples (fewer than ``min_samples`` in an arm, or fewer than 10
   observations beyond a latency quantile), the gate is inconclusive before any test.

Tests: ``sequential`` (default) uses the confidence sequences of
:mod:`rollwise.stats.sequential`, so the gate may be evaluated at every controller tick
with both error rates held at ``alpha``; ``fixed`` uses z intervals (Welch's t for
differences of means), valid for a single look; ``mann_whitney`` judges the
Hodges-Lehmann shift of the latency histograms (of log latency for ratio bounds), as
Kayenta does. ``drift_ks`` uses DKW bands (time-uniform for ``sequential``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from rollwise.analysis.gates import Bound, Gate, Method, Metric
from rollwise.analysis.llm_figures import is_llm, llm_figure, llm_sample_size
from rollwise.analysis.summary import ArmSummary
from rollwise.analysis.verdict import GateResult, Verdict
from rollwise.metrics.histogram import LogHistogram, log_midpoints, midpoints
from rollwise.metrics.satisfaction import satisfaction_estimate
from rollwise.stats import drift
from rollwise.stats import sequential as seq
from rollwise.stats.estimates import (
    Estimate,
    difference,
    log_ratio,
    z_interval,
    z_p_value,
    z_statistic,
)
from rollwise.stats.means import mean_estimate, moments_from_sums, welch_ttest
from rollwise.stats.proportions import proportion_estimate
from rollwise.stats.quantiles import MIN_TAIL_COUNT, quantile_estimate, tail_count
from rollwise.stats.ranks import mann_whitney_counts
from rollwise.stats.results import Alternative, Interval

_MEAN_METRICS = (Metric.MAE, Metric.REWARD, Metric.LATENCY_MEAN)


@dataclass(frozen=True, slots=True)
class ArmFigure:
    """One arm's metric: its value, sample size and (when computable) its estimate."""

    value: float
    n: int
    estimate: Estimate | None
    problem: str | None = None


def _sample_size(metric: Metric, arm: ArmSummary) -> int:
    if is_llm(metric):
        return llm_sample_size(metric, arm)
    if metric in (Metric.ERROR_RATE, Metric.CLIENT_ERROR_RATE):
        return arm.requests
    if metric.is_latency:
        return arm.latency.count
    if metric is Metric.SHADOW_AGREEMENT:
        return arm.shadow_compared
    if metric is Metric.SATISFACTION:
        return arm.satisfaction
    if metric is Metric.WIN_RATE:
        return arm.shadow_judged
    if metric in (Metric.DRIFT_PSI, Metric.DRIFT_KS):
        return arm.output_count
    return arm.feedback


def arm_estimate(metric: Metric, arm: ArmSummary) -> ArmFigure:
    """The metric of one arm as an :class:`ArmFigure` (drift metrics have no per-arm form)."""
    if is_llm(metric):
        value, n, est, problem = llm_figure(metric, arm)
        return ArmFigure(value, n, est, problem)
    n = _sample_size(metric, arm)
    if metric is Metric.ERROR_RATE:
        value = arm.error_rate
        est = proportion_estimate(arm.errors, n) if n else None
        return ArmFigure(value, n, est, None if n else "no requests")
    if metric is Metric.CLIENT_ERROR_RATE:
        est = proportion_estimate(arm.client_errors, n) if n else None
        return ArmFigure(arm.client_error_rate, n, est, None if n else "no requests")
    if metric is Metric.ACCURACY:
        est = proportion_estimate(arm.correct, n) if n else None
        return ArmFigure(arm.accuracy, n, est, None if n else "no feedback")
    if metric is Metric.SHADOW_AGREEMENT:
        est = proportion_estimate(arm.shadow_agreed, n) if n else None
        return ArmFigure(arm.shadow_agreement, n, est, None if n else "no mirrored requests")
    if metric is Metric.WIN_RATE:
        est = proportion_estimate(arm.shadow_wins, n) if n else None
        return ArmFigure(arm.win_rate, n, est, None if n else "no answers judged")
    if metric is Metric.SATISFACTION:
        est = satisfaction_estimate(n, arm.satisfaction_sum, arm.satisfaction_sq_sum) if n else None
        return ArmFigure(arm.satisfaction_mean, n, est, None if n else "no ratings")
    if n < 2:
        return ArmFigure(math.nan, n, None, f"{n} samples; need at least 2 for a variance")
    if metric is Metric.MAE:
        mean, var = moments_from_sums(n, arm.abs_error_sum, arm.sq_error_sum)
        return ArmFigure(mean, n, mean_estimate(n, mean, var))
    if metric is Metric.REWARD:
        mean, var = moments_from_sums(n, arm.reward_sum, arm.reward_sq_sum)
        return ArmFigure(mean, n, mean_estimate(n, mean, var))
    if metric is Metric.RMSE:
        if arm.sq_error_sum > 0 and arm.quartic_error_sum <= 0:
            return ArmFigure(arm.rmse, n, None, "the summary lacks the sum of fourth powers")
        mse, var = moments_from_sums(n, arm.sq_error_sum, arm.quartic_error_sum)
        rmse = math.sqrt(mse)
        se = math.sqrt(var / n) / (2.0 * rmse) if rmse > 0 else 0.0
        return ArmFigure(rmse, n, Estimate(rmse, se, float(n)))
    if metric is Metric.LATENCY_MEAN:
        mean = arm.latency_mean_ms
        return ArmFigure(mean, n, mean_estimate(n, mean, arm.latency.variance()))
    q = metric.quantile
    if q is not None:
        value = arm.latency.quantile(q)
        if tail_count(arm.latency, q) < MIN_TAIL_COUNT:
            need = math.ceil(MIN_TAIL_COUNT / min(q, 1 - q))
            return ArmFigure(value, n, None, f"{n} latencies; p{q * 100:g} needs at least {need}")
        return ArmFigure(value, n, quantile_estimate(arm.latency, q))
    raise ValueError(f"metric {metric.value} has no per-arm estimate")


def _inconclusive(gate: Gate, reason: str, **figures: object) -> GateResult:
    return GateResult(gate=gate, verdict=Verdict.INCONCLUSIVE, reason=reason, **figures)  # type: ignore[arg-type]


def _directions(gate: Gate) -> tuple[Alternative, Alternative]:
    """(alternative meaning "breaks the bound", alternative meaning "within the bound")."""
    return ("greater", "less") if gate.bound.caps_above else ("less", "greater")


def _limit(gate: Gate) -> float:
    if gate.bound is Bound.MAX_DECREASE:
        return -gate.threshold
    if gate.bound.ratio:
        return math.log(gate.threshold)
    return gate.threshold


def evaluate_gate(gate: Gate, stable: ArmSummary, candidate: ArmSummary) -> GateResult:
    """The verdict on ``gate`` for the candidate against the stable version."""
    if gate.metric.external:
        # Its figure comes from outside: judge_step reads it (analysis.external).
        return _inconclusive(gate, "an external gate needs its reading")
    if gate.metric in (Metric.DRIFT_PSI, Metric.DRIFT_KS):
        return _evaluate_drift(gate, stable, candidate)
    cand = arm_estimate(gate.metric, candidate)
    relative = gate.bound.relative
    stab = arm_estimate(gate.metric, stable) if relative else None
    figures: dict[str, object] = {
        "stable_value": stab.value if stab else None,
        "candidate_value": cand.value,
        "n_stable": stab.n if stab else 0,
        "n_candidate": cand.n,
        "method": gate.method.value,
    }
    smallest = min(cand.n, stab.n) if stab else cand.n
    if smallest < gate.min_samples:
        who = "each version" if relative else "the candidate"
        return _inconclusive(
            gate, f"not enough data: {smallest} samples, {who} needs {gate.min_samples}", **figures
        )
    for fig in (cand, stab):
        if fig is not None and fig.estimate is None:
            return _inconclusive(gate, f"not enough data: {fig.problem}", **figures)
    assert cand.estimate is not None
    if gate.method is Method.MANN_WHITNEY:
        return _evaluate_mann_whitney(gate, stable, candidate, figures)
    if not relative:
        est = cand.estimate
    elif gate.bound.ratio:
        assert stab is not None and stab.estimate is not None
        if not (stab.estimate.value > 0 and cand.estimate.value > 0):
            return _inconclusive(gate, "a ratio needs positive values in both versions", **figures)
        est = log_ratio(stab.estimate, cand.estimate)
    else:
        assert stab is not None and stab.estimate is not None
        est = difference(stab.estimate, cand.estimate)
    if (
        gate.method is Method.FIXED
        and relative
        and not gate.bound.ratio
        and gate.metric in _MEAN_METRICS
    ):
        return _decide_welch(gate, stab, cand, figures)
    return _decide(gate, est, figures)


def _decide(gate: Gate, est: Estimate, figures: dict[str, object]) -> GateResult:
    limit = _limit(gate)
    worse, better = _directions(gate)
    e_fail: float | None = None
    if gate.method is Method.SEQUENTIAL:
        e_fail = seq.e_value(est, limit, alternative=worse, alpha=gate.alpha, horizon=gate.horizon)
        e_pass = seq.e_value(est, limit, alternative=better, alpha=gate.alpha, horizon=gate.horizon)
        p_fail, p_pass = _p_of(e_fail), _p_of(e_pass)
        interval = seq.confidence_sequence(est, alpha=2 * gate.alpha, horizon=gate.horizon)
        method = "sequential confidence sequence"
    else:
        z = z_statistic(est, limit)
        p_fail, p_pass = z_p_value(z, worse), z_p_value(z, better)
        interval = z_interval(est.value, est.se, 2 * gate.alpha)
        method = "fixed-horizon z interval"
    return _finish(gate, est.value, interval, limit, p_fail, p_pass, e_fail, method, figures)


def _p_of(e: float) -> float:
    return 1.0 if e <= 0 else min(1.0, 1.0 / e)


def _decide_welch(
    gate: Gate, stab: ArmFigure | None, cand: ArmFigure, figures: dict[str, object]
) -> GateResult:
    assert stab is not None and stab.estimate is not None and cand.estimate is not None
    limit = _limit(gate)
    worse, better = _directions(gate)
    s, c = stab.estimate, cand.estimate

    def run(alternative: Alternative, alpha: float) -> tuple[float, Interval, float]:
        r = welch_ttest(
            int(s.n_eff),
            s.value,
            s.se**2 * s.n_eff,
            int(c.n_eff),
            c.value,
            c.se**2 * c.n_eff,
            null_diff=limit,
            alternative=alternative,
            alpha=alpha,
        )
        return r.p_value, r.interval, r.estimate

    p_fail, _, diff = run(worse, gate.alpha)
    p_pass, _, _ = run(better, gate.alpha)
    _, interval, _ = run("two-sided", 2 * gate.alpha)
    return _finish(
        gate, diff, interval, limit, p_fail, p_pass, None, "fixed-horizon Welch t", figures
    )


def _finish(
    gate: Gate,
    value: float,
    interval: Interval,
    limit: float,
    p_fail: float,
    p_pass: float,
    e_fail: float | None,
    method: str,
    figures: dict[str, object],
    scale: Callable[[float], float] | None = None,
) -> GateResult:
    if scale is None and gate.bound.ratio:
        scale = math.exp
    if scale is not None:
        value, interval, limit = scale(value), interval.map(scale), scale(limit)
    shown_limit = gate.threshold if gate.bound.ratio else limit
    if p_fail <= gate.alpha:
        verdict, outcome = Verdict.FAIL, "breaks the bound"
    elif p_pass <= gate.alpha:
        verdict, outcome = Verdict.PASS, "within the bound"
    else:
        verdict, outcome = Verdict.INCONCLUSIVE, "undecided: the interval straddles the bound"
    what = {True: "candidate / stable", False: "candidate - stable"}[gate.bound.ratio]
    if not gate.bound.relative:
        what = "candidate"
    reason = (
        f"{gate.describe()}: {outcome}; {what} = {value:.4g}, "
        f"{interval.level:.0%} interval [{interval.low:.4g}, {interval.high:.4g}] "
        f"vs limit {shown_limit:.4g} (p_fail = {p_fail:.3g}, p_pass = {p_pass:.3g})"
    )
    figures = {**figures, "method": method}
    return GateResult(
        gate=gate,
        verdict=verdict,
        reason=reason,
        estimate=value,
        interval=interval,
        limit=shown_limit,
        p_fail=p_fail,
        p_pass=p_pass,
        e_value=e_fail,
        enough_data=True,
        **figures,  # type: ignore[arg-type]
    )


def _evaluate_mann_whitney(
    gate: Gate, stable: ArmSummary, candidate: ArmSummary, figures: dict[str, object]
) -> GateResult:
    values = log_midpoints() if gate.bound.ratio else midpoints()
    cs, cc = stable.latency.counts(), candidate.latency.counts()
    limit = _limit(gate)
    worse, better = _directions(gate)

    def run(alternative: Alternative, alpha: float) -> tuple[float, Interval, float]:
        r = mann_whitney_counts(
            values, cs, cc, null_shift=limit, alternative=alternative, alpha=alpha
        )
        return r.p_value, r.interval, r.estimate

    p_fail, _, shift = run(worse, gate.alpha)
    p_pass, _, _ = run(better, gate.alpha)
    _, interval, _ = run("two-sided", 2 * gate.alpha)
    return _finish(
        gate, shift, interval, limit, p_fail, p_pass, None, "Mann-Whitney / Hodges-Lehmann", figures
    )


def _output_counts(
    stable: ArmSummary, candidate: ArmSummary
) -> tuple[list[int], list[int], bool] | str:
    a, b = stable.outputs, candidate.outputs
    if a is None or b is None:
        return "no output distribution recorded"
    if isinstance(a, LogHistogram) and isinstance(b, LogHistogram):
        return list(a.counts()), list(b.counts()), True
    if isinstance(a, LogHistogram) or isinstance(b, LogHistogram):
        return "one version has numeric outputs and the other labels"
    _, ca, cb = drift.align(a, b)
    return ca, cb, False


def _evaluate_drift(gate: Gate, stable: ArmSummary, candidate: ArmSummary) -> GateResult:
    figures: dict[str, object] = {
        "n_stable": stable.output_count,
        "n_candidate": candidate.output_count,
        "method": gate.method.value,
    }
    smallest = min(stable.output_count, candidate.output_count)
    if smallest < gate.min_samples:
        return _inconclusive(
            gate,
            f"not enough data: {smallest} outputs, each version needs {gate.min_samples}",
            **figures,
        )
    counts = _output_counts(stable, candidate)
    if isinstance(counts, str):
        return _inconclusive(gate, counts, **figures)
    cs, cc, ordered = counts
    if gate.metric is Metric.DRIFT_PSI:
        return _decide(gate, drift.psi(cs, cc), figures)
    if not ordered:
        return _inconclusive(
            gate, "drift_ks needs numeric outputs; use drift_psi for labels", **figures
        )
    sequential = gate.method is Method.SEQUENTIAL
    ks = drift.ks_counts(cs, cc, alpha=gate.alpha, sequential=sequential)
    p_fail = _dkw_p(ks.statistic - gate.threshold, ks.n_control, ks.n_treatment, sequential)
    p_pass = _dkw_p(gate.threshold - ks.statistic, ks.n_control, ks.n_treatment, sequential)
    method = "time-uniform DKW band" if sequential else "DKW band"
    return _finish(
        gate, ks.statistic, ks.interval, gate.threshold, p_fail, p_pass, None, method, figures
    )


def _dkw_p(gap: float, n_c: int, n_t: int, sequential: bool) -> float:
    """Smallest alpha at which the DKW interval of the KS distance clears ``gap``."""
    radius = seq.dkw_radius_uniform if sequential else seq.dkw_radius

    def width(alpha: float) -> float:
        return radius(n_c, alpha / 2.0) + radius(n_t, alpha / 2.0)

    if gap <= 0 or width(0.999999) > gap:
        return 1.0
    lo, hi = -700.0, math.log(0.999999)
    if width(math.exp(lo)) <= gap:
        return 0.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if width(math.exp(mid)) <= gap:
            hi = mid
        else:
            lo = mid
    return math.exp(hi)
