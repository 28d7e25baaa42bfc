"""Verdict values: the outcome of one gate and of all gates together, with their figures.

Every result carries the numbers it was decided on (estimate, interval, p-values or
e-value, sample sizes, the bound on the estimate's scale) so that the event recording a
promotion or a rollback can say exactly why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from rollwise.analysis.gates import Gate
from rollwise.stats.results import Interval


class Verdict(StrEnum):
    PASS = "pass"
    """There is evidence that the candidate stays within the bound."""
    FAIL = "fail"
    """There is evidence that the candidate breaks the bound."""
    INCONCLUSIVE = "inconclusive"
    """Not enough data, or the data do not yet decide; never a pass."""


def _num(value: float | None) -> float | str | None:
    if value is None:
        return None
    return float(value) if math.isfinite(value) else str(value)


@dataclass(frozen=True, slots=True)
class GateResult:
    """The verdict on one gate.

    ``estimate`` and ``interval`` are on the scale of the bound: a difference for
    ``max_increase``/``max_decrease``, a ratio for ``*_ratio``, the candidate's value for
    absolute bounds; ``limit`` is the bound on that scale. ``p_fail`` is the p-value of
    "the candidate stays within the bound" (small: evidence of a breach), ``p_pass`` that
    of "the candidate breaks it" (small: evidence it is fine); for sequential tests both
    are always-valid (``1/E``) and ``e_value`` is the e-value against staying within the
    bound. ``p_fail_adjusted`` is set by the judge after the multiple-testing correction.
    ``interval`` has level ``1 - 2·alpha``: each end is a one-sided bound at ``alpha``.
    """

    gate: Gate
    verdict: Verdict
    reason: str
    method: str = ""
    stable_value: float | None = None
    candidate_value: float | None = None
    estimate: float | None = None
    interval: Interval | None = None
    limit: float | None = None
    p_fail: float = 1.0
    p_pass: float = 1.0
    e_value: float | None = None
    n_stable: int = 0
    n_candidate: int = 0
    enough_data: bool = False
    p_fail_adjusted: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate.name,
            "spec": self.gate.to_dict(),
            "description": self.gate.describe(),
            "verdict": self.verdict.value,
            "reason": self.reason,
            "method": self.method,
            "stable_value": _num(self.stable_value),
            "candidate_value": _num(self.candidate_value),
            "estimate": _num(self.estimate),
            "interval": self.interval.to_dict() if self.interval else None,
            "limit": _num(self.limit),
            "p_fail": self.p_fail,
            "p_pass": self.p_pass,
            "p_fail_adjusted": self.p_fail_adjusted,
            "e_value": _num(self.e_value),
            "n_stable": self.n_stable,
            "n_candidate": self.n_candidate,
            "alpha": self.gate.alpha,
        }
