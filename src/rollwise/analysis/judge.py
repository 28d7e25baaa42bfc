"""Combine gate results (and the SRM check) into one verdict for a step.

The rule, in order:

1. **SRM first.** If the sample-ratio check reports a mismatch, the verdict is ``fail``
   whatever the gates say: the split is not what was configured, so every comparison is
   suspect, and a broken split usually means a broken candidate. A failed SRM check
   therefore always blocks a pass.
2. **Correct the fail decisions for multiplicity.** Any single gate can fail the step,
   so the gates' ``p_fail`` values are adjusted together (Holm by default, which bounds
   the probability of any false failure by ``alpha``; Benjamini-Hochberg on request).
   Only gates with enough data take part. A gate fails when its adjusted ``p_fail`` is
   at most its ``alpha``; a gate that failed only before adjustment becomes
   inconclusive.
3. **Any fail → fail.**
4. **All pass → pass.** No adjustment is needed here: the step passes only if every
   gate shows evidence of being within its bound, and an intersection of level-``alpha``
   tests is itself level ``alpha`` (Berger 1982, "Multiparameter hypothesis testing and
   acceptance sampling", *Technometrics* 24:295).
5. **Otherwise inconclusive**, naming the gates still undecided or short of data. No gates
   at all is inconclusive too: a pass always needs evidence.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rollwise.analysis.evaluate import evaluate_gate
from rollwise.analysis.external import Reading, evaluate_external
from rollwise.analysis.gates import Gate
from rollwise.analysis.summary import ArmSummary
from rollwise.analysis.verdict import GateResult, Verdict
from rollwise.stats.multiple import Correction, adjust
from rollwise.stats.srm import DEFAULT_ALPHA as SRM_ALPHA
from rollwise.stats.srm import SrmResult, srm_chisquare, srm_sequential

__all__ = ["Judgement", "Verdict", "check_srm", "judge", "judge_step"]


@dataclass(frozen=True, slots=True)
class Judgement:
    """The verdict of a step with every gate's result and the SRM check behind it."""

    verdict: Verdict
    reason: str
    gates: tuple[GateResult, ...]
    srm: SrmResult | None
    correction: Correction

    @property
    def failed(self) -> tuple[GateResult, ...]:
        return tuple(g for g in self.gates if g.verdict is Verdict.FAIL)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "reason": self.reason,
            "correction": self.correction,
            "gates": [g.to_dict() for g in self.gates],
            "srm": self.srm.to_dict() if self.srm else None,
        }


def judge(
    results: Sequence[GateResult],
    *,
    srm: SrmResult | None = None,
    correction: Correction = "holm",
) -> Judgement:
    """One verdict from gate results by the rule in the module docstring."""
    decided = [i for i, r in enumerate(results) if r.enough_data]
    adjusted = adjust([results[i].p_fail for i in decided], correction)
    final: list[GateResult] = list(results)
    for i, p_adj in zip(decided, adjusted, strict=True):
        r = results[i]
        update: dict[str, Any] = {"p_fail_adjusted": p_adj}
        if r.verdict is Verdict.FAIL and p_adj > r.gate.alpha:
            update["verdict"] = Verdict.INCONCLUSIVE
            update["reason"] = (
                f"{r.reason}; not a failure after {correction} correction "
                f"(adjusted p_fail = {p_adj:.3g})"
            )
        final[i] = dataclasses.replace(r, **update)
    gates = tuple(final)
    if srm is not None and srm.mismatch:
        return Judgement(
            Verdict.FAIL,
            f"sample ratio mismatch: observed {list(srm.observed)}, expected "
            f"{[round(e, 1) for e in srm.expected]} (p = {srm.p_value:.3g})",
            gates,
            srm,
            correction,
        )
    failed = [g for g in gates if g.verdict is Verdict.FAIL]
    if failed:
        names = ", ".join(g.gate.describe() for g in failed)
        return Judgement(Verdict.FAIL, f"failed: {names}", gates, srm, correction)
    if gates and all(g.verdict is Verdict.PASS for g in gates):
        return Judgement(Verdict.PASS, f"all {len(gates)} gates pass", gates, srm, correction)
    if not gates:
        return Judgement(Verdict.INCONCLUSIVE, "no gates to judge", gates, srm, correction)
    waiting = "; ".join(
        f"{g.gate.describe()} ({g.reason if not g.enough_data else 'undecided'})"
        for g in gates
        if g.verdict is not Verdict.PASS
    )
    return Judgement(Verdict.INCONCLUSIVE, f"waiting for: {waiting}", gates, srm, correction)


def check_srm(
    stable: ArmSummary,
    candidate: ArmSummary,
    weights_percent: tuple[int, int],
    *,
    alpha: float = SRM_ALPHA,
    sequential: bool = True,
    counts: tuple[int, int] | None = None,
) -> SrmResult:
    """SRM on served requests: ``weights_percent`` is (stable %, candidate %).

    ``counts`` replaces the request counts where the unit of assignment is not the
    request: with a sticky user key, the (stable, candidate) numbers of distinct users."""
    observed = list(counts) if counts is not None else [stable.requests, candidate.requests]
    if sequential:
        return srm_sequential(observed, list(weights_percent), alpha=alpha)
    return srm_chisquare(observed, list(weights_percent), alpha=alpha)


def judge_step(
    gates: Sequence[Gate],
    stable: ArmSummary,
    candidate: ArmSummary,
    *,
    weights_percent: tuple[int, int] | None = None,
    correction: Correction = "holm",
    srm_alpha: float = SRM_ALPHA,
    sequential_srm: bool = True,
    srm_counts: tuple[int, int] | None = None,
    readings: Mapping[Gate, Reading] | None = None,
) -> Judgement:
    """The controller's entry point: evaluate every gate, check SRM, combine.

    ``weights_percent`` is the configured (stable, candidate) split of served traffic;
    leave it out where no split applies (shadow, blue-green preview) and SRM is skipped.
    ``srm_counts`` are the units the split assigns when they are not requests (users).
    ``readings`` are the external gates' figures (prometheus, web) read this tick.
    """
    found = readings or {}
    results = [
        evaluate_external(g, found.get(g), stable.requests, candidate.requests)
        if g.metric.external
        else evaluate_gate(g, stable, candidate)
        for g in gates
    ]
    srm = None
    if weights_percent is not None and 0 < weights_percent[1] < 100:
        srm = check_srm(
            stable,
            candidate,
            weights_percent,
            alpha=srm_alpha,
            sequential=sequential_srm,
            counts=srm_counts,
        )
    return judge(results, srm=srm, correction=correction)
