"""The verdict of an external gate (prometheus, web) from one reading (pure).

Such a figure carries no sample count and no variance, so no statistical test applies
and **these gates have no statistical guarantee**: a reading is compared with the bound
as it is. The rule, for each controller tick (every tick reads afresh):

1. no reading, an error, a timeout, a non-2xx answer, or an answer that is not one
   number (see :mod:`rollwise.analysis.sources`) → *inconclusive*, never a pass;
2. the figure on the bound's scale — the candidate's value (``max``/``min``), candidate
   minus stable (``max_increase``; stable minus candidate for ``max_decrease``), or
   candidate over stable (``*_ratio``; a stable value of 0 or less is inconclusive) —
   beyond the bound → *fail*; a web answer ``false`` → *fail*;
3. within the bound (or ``true``) → *pass*, once rollwise's own request counts reach
   ``min_samples`` (the candidate's, and the stable version's for a relative bound);
   before that *inconclusive*.

A fail counts towards the rollout's ``rollback.failure_limit`` like any failing
judgement: ``failure_limit: 3`` rolls back on three consecutive breached readings, so
one noisy scrape does not. External results stay out of the multiple-testing
correction of the statistical gates (they carry no p-value).
"""

from __future__ import annotations

from dataclasses import dataclass

from rollwise.analysis.gates import Bound, Gate
from rollwise.analysis.verdict import GateResult, Verdict


@dataclass(frozen=True, slots=True)
class Reading:
    """What a source answered for one gate at one tick: the candidate's figure (a web
    check may answer a boolean), the stable version's for relative bounds, or the
    problem that stood in the way."""

    candidate: float | bool | None = None
    stable: float | None = None
    problem: str = ""


def _on_scale(gate: Gate, candidate: float, stable: float | None) -> float | str:
    """The figure the bound speaks of, or why there is none."""
    if not gate.bound.relative:
        return candidate
    if stable is None:
        return "no reading for the stable version"
    if gate.bound.ratio:
        if stable <= 0:
            return f"a ratio needs a positive stable value, got {stable:g}"
        return candidate / stable
    if gate.bound is Bound.MAX_DECREASE:
        return stable - candidate
    return candidate - stable


def _breaks(gate: Gate, value: float) -> bool:
    if gate.bound in (Bound.MIN, Bound.MIN_RATIO):
        return value < gate.threshold
    return value > gate.threshold


def evaluate_external(
    gate: Gate, reading: Reading | None, n_stable: int, n_candidate: int
) -> GateResult:
    """The verdict on an external ``gate`` by the rule in the module docstring;
    ``n_stable``/``n_candidate`` are rollwise's own request counts of the arms."""
    method = f"{gate.metric.value} reading (no statistical test)"
    relative = gate.bound.relative
    counts = {"n_stable": n_stable if relative else 0, "n_candidate": n_candidate}

    def result(verdict: Verdict, reason: str, **figures: object) -> GateResult:
        return GateResult(
            gate=gate,
            verdict=verdict,
            reason=f"{gate.describe()}: {reason}",
            method=method,
            p_fail=0.0 if verdict is Verdict.FAIL else 1.0,
            p_pass=0.0 if verdict is Verdict.PASS else 1.0,
            **counts,  # type: ignore[arg-type]
            **figures,  # type: ignore[arg-type]
        )

    if reading is None:
        return result(Verdict.INCONCLUSIVE, "no reading yet")
    if reading.problem:
        return result(Verdict.INCONCLUSIVE, f"inconclusive: {reading.problem}")
    shown = {
        "candidate_value": None if isinstance(reading.candidate, bool) else reading.candidate,
        "stable_value": reading.stable,
    }
    if isinstance(reading.candidate, bool):
        if not reading.candidate:
            return result(Verdict.FAIL, "answered false", **shown)
        outcome = "answered true"
    elif reading.candidate is None:
        return result(Verdict.INCONCLUSIVE, "no value for the candidate", **shown)
    else:
        value = _on_scale(gate, reading.candidate, reading.stable)
        if isinstance(value, str):
            return result(Verdict.INCONCLUSIVE, f"inconclusive: {value}", **shown)
        figures = {**shown, "estimate": value, "limit": gate.threshold}
        if _breaks(gate, value):
            return result(Verdict.FAIL, f"breaks the bound: {value:.4g}", **figures)
        outcome = f"within the bound: {value:.4g}"
        shown = figures
    smallest = min(n_stable, n_candidate) if relative else n_candidate
    if smallest < gate.min_samples:
        who = "each version" if relative else "the candidate"
        return result(
            Verdict.INCONCLUSIVE,
            f"{outcome}, but {smallest} requests so far; {who} needs {gate.min_samples}",
            **shown,
        )
    return result(Verdict.PASS, outcome, **shown)
