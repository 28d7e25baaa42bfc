"""Asymptotically normal estimates and their fixed-horizon z inference.

Most gate metrics reduce to an estimator that is approximately normal for large
samples: a proportion, a mean, a quantile (via Woodruff's interval), a PSI (via the
delta method). An :class:`Estimate` carries its value, its standard error and its
*effective sample size*, which lets one code path build fixed-horizon intervals (here)
and confidence sequences (:mod:`rollwise.stats.sequential`) for all of them.

Effective sample size: for one arm of ``n`` observations with per-observation variance
``s²``, ``se² = s² / n`` and ``n_eff = n``. For a two-arm contrast,
``se² = s_t² / n_t + s_c² / n_c`` and ``n_eff = (s_t² + s_c²) / se²``: the per-arm sample
size of a balanced design with the same precision (the harmonic mean of the two sizes
when the variances are equal). Confidence sequences are tuned and indexed by it.

Two-arm contrasts: :func:`difference` (treatment minus control, variances add) and
:func:`log_ratio` (log of treatment over control, by the delta method
``Var(log X) ≈ Var(X) / E[X]²``; Casella & Berger, *Statistical Inference*, 2nd ed., §5.5.4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special

from rollwise.stats.results import Alternative, Interval, check_alpha, check_alternative


@dataclass(frozen=True, slots=True)
class Estimate:
    """An approximately normal estimate ``value`` with standard error ``se``."""

    value: float
    se: float
    n_eff: float

    def __post_init__(self) -> None:
        if not self.se >= 0.0:
            raise ValueError(f"standard error must be >= 0, got {self.se}")
        if not self.n_eff > 0.0:
            raise ValueError(f"effective sample size must be > 0, got {self.n_eff}")

    @property
    def unit_variance(self) -> float:
        """Variance of one (effective) observation: ``se² · n_eff``."""
        return self.se * self.se * self.n_eff

    def log(self) -> Estimate:
        """The estimate of ``log(value)`` by the delta method (value must be positive)."""
        if not self.value > 0.0:
            raise ValueError(f"log of a non-positive estimate {self.value}")
        return Estimate(math.log(self.value), self.se / self.value, self.n_eff)


def difference(control: Estimate, treatment: Estimate) -> Estimate:
    """Treatment minus control for two independent estimates."""
    var = control.se**2 + treatment.se**2
    if var > 0.0:
        n_eff = (control.unit_variance + treatment.unit_variance) / var
    else:
        n_eff = 2.0 / (1.0 / control.n_eff + 1.0 / treatment.n_eff)
    return Estimate(treatment.value - control.value, math.sqrt(var), n_eff)


def log_ratio(control: Estimate, treatment: Estimate) -> Estimate:
    """log(treatment / control) for two independent positive estimates."""
    return difference(control.log(), treatment.log())


def z_quantile(p: float) -> float:
    """The standard normal quantile Φ⁻¹(p)."""
    return float(special.ndtri(p))


def z_p_value(z: float, alternative: Alternative) -> float:
    """P-value of a standard normal statistic ``z`` for the given alternative."""
    if math.isnan(z):
        return 1.0
    if alternative == "greater":
        return float(special.ndtr(-z))
    if alternative == "less":
        return float(special.ndtr(z))
    return float(min(1.0, 2.0 * special.ndtr(-abs(z))))


def z_statistic(estimate: Estimate, null_value: float) -> float:
    """``(value - null) / se``; ±inf or 0 when the standard error is zero."""
    diff = estimate.value - null_value
    if estimate.se > 0.0:
        return diff / estimate.se
    if diff == 0.0:
        return 0.0
    return math.copysign(math.inf, diff)


def z_interval(
    value: float, se: float, alpha: float, alternative: Alternative = "two-sided"
) -> Interval:
    """Wald interval ``value ± z · se`` of level ``1 - alpha`` (one end infinite if one-sided)."""
    check_alpha(alpha)
    alternative = check_alternative(alternative)
    if alternative == "two-sided":
        half = z_quantile(1.0 - alpha / 2.0) * se
        return Interval(value - half, value + half, 1.0 - alpha)
    half = z_quantile(1.0 - alpha) * se
    if alternative == "greater":
        return Interval(value - half, math.inf, 1.0 - alpha)
    return Interval(-math.inf, value + half, 1.0 - alpha)


def z_test(
    estimate: Estimate,
    null_value: float = 0.0,
    alternative: Alternative = "two-sided",
    alpha: float = 0.05,
) -> tuple[float, float, Interval]:
    """``(z, p-value, interval)`` of the Wald test of ``value == null_value``."""
    alternative = check_alternative(alternative)
    z = z_statistic(estimate, null_value)
    return z, z_p_value(z, alternative), z_interval(estimate.value, estimate.se, alpha, alternative)
