"""How much longer an undecided gate needs: the samples it lacks and the time they take.

An analysis at low traffic stays inconclusive, and past its limit the rollback policy
acts on it; people need to see that coming. For one gate's result (per arm, the arm that
fills slowest: the smaller one for a comparison, the candidate for an absolute bound):

* short of data: what is missing up to ``min_samples`` (for a latency quantile, up to
  the ``MIN_TAIL_COUNT`` observations beyond it that judging it needs). It is a floor:
  with that many the gate can be judged, not yet decided;
* judged but undecided (the interval straddles the bound): the size ``n'`` at which the
  interval, with the current estimate, would just clear the bound, when its half-width
  shrinks as ``√(n/n')`` like a standard error. The half-width is measured from the
  estimate to the interval's end towards the bound, on the scale of the test (log for
  ratio bounds). An estimate on the bound gives no size: "cannot tell".

An A/B test in progress needs at most what its smaller arm lacks to the planned size
(it may decide before).

The expected time is that many samples at the rate they arrived so far. Both are
estimates for people (a sequential interval narrows a little more slowly than ``1/√n``);
nothing is decided on them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rollwise.analysis.experiment import ExperimentDecision
from rollwise.analysis.gates import Gate
from rollwise.analysis.judge import Judgement
from rollwise.analysis.verdict import GateResult, Verdict
from rollwise.stats.quantiles import MIN_TAIL_COUNT


@dataclass(frozen=True, slots=True)
class Horizon:
    """Samples per arm a gate still needs, and the seconds they take at the current rate."""

    more: int | None
    """Samples still needed in the slowest arm; None: cannot tell (``why`` says)."""
    at_least: bool = False
    """``more`` only brings the gate up to ``min_samples``; it may need more to decide."""
    expected_s: float | None = None
    """``more`` at ``rate_per_s``; None without a rate or without ``more``."""
    rate_per_s: float | None = None
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "more": self.more,
            "at_least": self.at_least,
            "expected_s": self.expected_s,
            "rate_per_s": self.rate_per_s,
            "why": self.why,
        }


def samples_to_judge(gate: Gate) -> int:
    """Samples per arm before ``gate`` can be judged at all."""
    need = gate.min_samples
    q = gate.metric.quantile
    if q is not None:
        # As the gate's evaluation asks: enough observations beyond the quantile.
        need = max(need, math.ceil(MIN_TAIL_COUNT / min(q, 1.0 - q)))
    return need


def slowest_arm(result: GateResult) -> int:
    """Samples so far in the arm that limits the gate."""
    if result.gate.bound.relative or result.n_stable > 0:
        return min(result.n_stable, result.n_candidate)
    return result.n_candidate


def observed_rate(result: GateResult, elapsed_s: float) -> float | None:
    """Samples per second in the slowest arm over the ``elapsed_s`` they took."""
    if not elapsed_s > 0:
        return None
    return slowest_arm(result) / elapsed_s


def gate_horizon(result: GateResult, rate_per_s: float | None) -> Horizon | None:
    """How much longer ``result``'s gate needs (rule in the module docstring); None for a
    gate that has decided."""
    if result.verdict is not Verdict.INCONCLUSIVE:
        return None
    n = slowest_arm(result)
    if not result.enough_data:
        missing = samples_to_judge(result.gate) - n
        if missing <= 0:
            return Horizon(None, rate_per_s=rate_per_s, why=result.reason)
        return _timed(missing, rate_per_s, at_least=True)
    factor = _shrink_factor(result)
    if isinstance(factor, str):
        return Horizon(None, rate_per_s=rate_per_s, why=factor)
    return _timed(max(1, math.ceil(n * factor - 1e-9) - n), rate_per_s, at_least=False)


def _timed(more: int, rate_per_s: float | None, *, at_least: bool) -> Horizon:
    expected = more / rate_per_s if rate_per_s else None
    return Horizon(more, at_least, expected, rate_per_s)


def _shrink_factor(result: GateResult) -> float | str:
    """``n'/n`` for the interval to clear the bound, or why there is none."""
    if result.estimate is None or result.interval is None or result.limit is None:
        return "no interval to extrapolate"
    points = [result.estimate, result.interval.low, result.interval.high, result.limit]
    if not all(math.isfinite(p) for p in points):
        return "no finite interval to extrapolate"
    if result.gate.bound.ratio:
        if min(points) <= 0:
            return "a ratio needs positive values"
        points = [math.log(p) for p in points]
    estimate, low, high, limit = points
    if estimate < limit:
        half, distance = high - estimate, limit - estimate
    else:
        half, distance = estimate - low, estimate - limit
    if distance <= 0:
        return "the estimate sits on the bound: more data may go either way"
    if half <= distance:
        # Clear of the bound already, yet undecided: held back by the multiple-testing
        # correction, which this extrapolation does not model.
        return "undecided after the correction for several gates"
    return (half / distance) ** 2


def experiment_horizon(
    decision: ExperimentDecision, samples_per_arm: int, elapsed_s: float
) -> Horizon | None:
    """How much longer an A/B test may take: its smaller arm up to the planned size, at
    the rate that arm filled over ``elapsed_s``; None once it has decided."""
    n = min(decision.n_stable, decision.n_candidate)
    more = samples_per_arm - n
    if decision.done or more <= 0:
        return None
    return _timed(more, n / elapsed_s if elapsed_s > 0 else None, at_least=False)


def judgement_figures(judgement: Judgement, elapsed_s: float) -> dict[str, Any]:
    """A judgement's figures (``to_dict``), each undecided gate with its ``horizon``
    at the rate its samples arrived over ``elapsed_s``."""
    figures = judgement.to_dict()
    for shown, result in zip(figures["gates"], judgement.gates, strict=True):
        horizon = gate_horizon(result, observed_rate(result, elapsed_s))
        if horizon is not None:
            shown["horizon"] = horizon.to_dict()
    return figures


def waiting_gates(figures: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The undecided gates of stored judgement figures (a status's ``judgement``: the
    current analysis, else the background gates), each with its horizon (None when
    the figures predate horizons)."""
    figures = figures or {}
    judgement = figures.get("step") or figures.get("background") or {}
    return [
        {
            "gate": gate.get("description") or gate.get("gate", ""),
            "horizon": gate.get("horizon"),
        }
        for gate in judgement.get("gates", [])
        if gate.get("verdict") == Verdict.INCONCLUSIVE.value
    ]
