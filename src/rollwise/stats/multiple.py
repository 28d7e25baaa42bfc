"""Multiple testing: adjusted p-values when several gates decide together.

When any one of k gates can fail a rollout, each judged at level α, the chance that at
least one fails by accident grows towards ``1 - (1 - α)^k``. Adjusting the gates' "fail"
p-values keeps that chance at α:

* Holm's step-down procedure controls the family-wise error rate (the probability of
  any false failure) under any dependence between gates (Holm 1979, "A simple
  sequentially rejective multiple test procedure", *Scand. J. Stat.* 6:65): with sorted
  ``p_(1) ≤ … ≤ p_(k)``, ``p̃_(i) = max_{j ≤ i} min(1, (k - j + 1)·p_(j))``. It is the
  default, because a rollback is costly and gates on one candidate are dependent.
* Benjamini-Hochberg controls the false discovery rate (the expected share of false
  failures among failures) under independence or positive dependence (Benjamini &
  Hochberg 1995, *JRSS B* 57:289): ``p̃_(i) = min_{j ≥ i} min(1, k·p_(j)/j)``. More
  lenient with many gates.
* Bonferroni ``min(1, k·p)`` is offered for comparison.

Always-valid p-values (``1/E`` of an e-process) stay valid after Holm or Bonferroni
adjustment, since both hold under arbitrary dependence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Correction = Literal["holm", "bh", "bonferroni", "none"]
CORRECTIONS: tuple[Correction, ...] = ("holm", "bh", "bonferroni", "none")


def _check(p_values: Sequence[float]) -> list[float]:
    ps = [float(p) for p in p_values]
    for p in ps:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p-values must be in [0, 1], got {p}")
    return ps


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order."""
    ps = _check(p_values)
    k = len(ps)
    order = sorted(range(k), key=lambda i: ps[i])
    adjusted = [0.0] * k
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input order."""
    ps = _check(p_values)
    k = len(ps)
    order = sorted(range(k), key=lambda i: ps[i])
    adjusted = [0.0] * k
    running = 1.0
    for rank in range(k - 1, -1, -1):
        i = order[rank]
        running = min(running, min(1.0, k * ps[i] / (rank + 1)))
        adjusted[i] = running
    return adjusted


def bonferroni(p_values: Sequence[float]) -> list[float]:
    ps = _check(p_values)
    return [min(1.0, len(ps) * p) for p in ps]


def adjust(p_values: Sequence[float], method: Correction = "holm") -> list[float]:
    """Adjusted p-values by the named correction (``"none"`` returns them unchanged)."""
    if method == "holm":
        return holm(p_values)
    if method == "bh":
        return benjamini_hochberg(p_values)
    if method == "bonferroni":
        return bonferroni(p_values)
    if method == "none":
        return _check(p_values)
    raise ValueError(f"correction must be one of {CORRECTIONS}, got {method!r}")
