"""Sample-ratio mismatch: does the observed traffic split match the configured weights?

A split that drifts from its configuration (a crashing candidate that logs fewer
requests, a router bug, bots pinned to one arm) biases every comparison, so a detected
mismatch blocks any pass. Weights are integer percents, as in the routing table.

* Fixed horizon: Pearson's chi-square goodness-of-fit test,
  ``X² = Σ (O_i - E_i)² / E_i`` with ``E_i = N · w_i / 100`` on ``k - 1`` degrees of freedom
  (Fabijan et al. 2019, "Diagnosing sample ratio mismatch in online controlled
  experiments", *KDD*). Arms of weight 0 are left out of the statistic; any observation on
  one is a certain mismatch (p = 0).
* Sequential: the Dirichlet-multinomial Bayes factor of Lindon & Malek 2022
  ("Anytime-valid inference for multinomial count data", *NeurIPS*),
  ``E = Γ(A)/Γ(A + N) · ∏ Γ(α_i + O_i)/Γ(α_i) / ∏ θ_i^{O_i}`` with ``α_i = A·θ_i``. Under the
  configured split ``E`` is a nonnegative martingale with mean 1, so by Ville's inequality
  ``P(E ever reaches 1/α) ≤ α`` however often it is looked at; ``p = min(1, 1/E)``.

The unit of the counts matters: with sticky assignment, count users rather than requests
where possible, since a few heavy users on one arm make request counts over-dispersed
and trip the test without any bug.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scipy import special
from scipy import stats as sps

DEFAULT_ALPHA = 0.001
"""Conventional SRM threshold: a mismatch is flagged only on strong evidence."""
DEFAULT_CONCENTRATION = 100.0
"""Prior concentration ``A`` of the sequential test (larger: more sensitive to small
deviations late, slower to flag large ones early)."""


@dataclass(frozen=True, slots=True)
class SrmResult:
    """Outcome of an SRM check; ``mismatch`` is the decision."""

    method: str
    statistic: float
    df: int
    p_value: float
    alpha: float
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    e_value: float | None = None

    @property
    def total(self) -> int:
        return sum(self.observed)

    @property
    def mismatch(self) -> bool:
        return self.p_value <= self.alpha

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "statistic": self.statistic if math.isfinite(self.statistic) else str(self.statistic),
            "df": self.df,
            "p_value": self.p_value,
            "alpha": self.alpha,
            "observed": list(self.observed),
            "expected": list(self.expected),
            "mismatch": self.mismatch,
        }
        if self.e_value is not None:
            out["e_value"] = self.e_value if math.isfinite(self.e_value) else str(self.e_value)
        return out


def _check(observed: Sequence[int], weights_percent: Sequence[int], alpha: float) -> None:
    if len(observed) != len(weights_percent) or len(observed) < 2:
        raise ValueError("observed counts and weights need one entry per arm, at least two")
    if any(int(w) != w or w < 0 or w > 100 for w in weights_percent):
        raise ValueError(f"weights must be integer percents in 0..100, got {list(weights_percent)}")
    if sum(weights_percent) != 100:
        raise ValueError(f"weights must sum to 100, got {sum(weights_percent)}")
    if any(int(o) != o or o < 0 for o in observed):
        raise ValueError(f"observed counts must be integers >= 0, got {list(observed)}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def srm_chisquare(
    observed: Sequence[int], weights_percent: Sequence[int], *, alpha: float = DEFAULT_ALPHA
) -> SrmResult:
    """Chi-square test of the observed counts against the configured integer-percent weights."""
    _check(observed, weights_percent, alpha)
    total = sum(observed)
    expected = tuple(total * w / 100.0 for w in weights_percent)
    obs = tuple(int(o) for o in observed)
    if any(o > 0 and w == 0 for o, w in zip(obs, weights_percent, strict=True)):
        return SrmResult("chi-square", math.inf, len(obs) - 1, 0.0, alpha, obs, expected)
    live = [(o, e) for o, e, w in zip(obs, expected, weights_percent, strict=True) if w > 0]
    df = len(live) - 1
    if total == 0 or df == 0:
        return SrmResult("chi-square", 0.0, df, 1.0, alpha, obs, expected)
    stat = sum((o - e) ** 2 / e for o, e in live)
    p = float(sps.chi2.sf(stat, df))
    return SrmResult("chi-square", stat, df, p, alpha, obs, expected)


def srm_sequential(
    observed: Sequence[int],
    weights_percent: Sequence[int],
    *,
    alpha: float = DEFAULT_ALPHA,
    concentration: float = DEFAULT_CONCENTRATION,
) -> SrmResult:
    """Anytime-valid SRM check (Dirichlet-multinomial e-value), safe to run at every tick."""
    _check(observed, weights_percent, alpha)
    if not concentration > 0.0:
        raise ValueError(f"concentration must be > 0, got {concentration}")
    total = sum(observed)
    obs = tuple(int(o) for o in observed)
    expected = tuple(total * w / 100.0 for w in weights_percent)
    if any(o > 0 and w == 0 for o, w in zip(obs, weights_percent, strict=True)):
        return SrmResult(
            "dirichlet-multinomial", math.inf, len(obs) - 1, 0.0, alpha, obs, expected, math.inf
        )
    live = [(o, w / 100.0) for o, w in zip(obs, weights_percent, strict=True) if w > 0]
    prior = [concentration * theta for _, theta in live]
    log_e = float(
        special.gammaln(concentration)
        - special.gammaln(concentration + total)
        + sum(
            special.gammaln(a + o) - special.gammaln(a)
            for (o, _), a in zip(live, prior, strict=True)
        )
        - sum(o * math.log(theta) for o, theta in live if o)
    )
    e_value = math.exp(min(log_e, 700.0))
    p = min(1.0, math.exp(-log_e)) if log_e > -700 else 1.0
    return SrmResult(
        "dirichlet-multinomial", log_e, len(live) - 1, p, alpha, obs, expected, e_value
    )
