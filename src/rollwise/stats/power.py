"""Power planning: how many samples an A/B test needs, and how long that takes.

Fixed-horizon sample sizes use the normal approximation with the null variance under
the null and the alternative variance under the alternative (Fleiss, Levin & Paik,
*Statistical Methods for Rates and Proportions*, 3rd ed., §4.2; Chow, Shao & Wang,
*Sample Size Calculations in Clinical Research*, §4.2):

    ``n_t = ((z_{1-α'}·σ_0 + z_{power}·σ_1) / δ)²``, ``n_c = n_t / r``

with ``r = n_t / n_c`` the allocation ratio, ``α' = α/2`` for a two-sided test (the far
tail is ignored, as is usual), and per-treatment-sample standard deviations of the
difference

* proportions: ``σ_0² = p̄(1-p̄)(1 + r)`` with the pooled ``p̄ = (r·p_t + p_c)/(1 + r)``,
  ``σ_1² = p_t(1-p_t) + r·p_c(1-p_c)``;
* means: ``σ_0² = σ_1² = σ_t² + r·σ_c²``.

Sequential (always-valid) tests pay for peeking with a larger sample.
:func:`sequential_sample_size` finds the effective sample size at which the
confidence-sequence boundary of :mod:`rollwise.stats.sequential`, tuned to that very
horizon, is crossed with the requested power when the effect is ``δ``:
``δ/se(t) - b(t)/√t = z_{power}``. It counts only a crossing at the end, so it errs on the
long side (the process may cross earlier). That horizon is also where an experiment
stops: by then an effect of at least ``δ`` would have been detected with the planned
power, so it ends "no difference" when the interval lies within ``±δ`` and
"inconclusive" when it is still wider.

A two-sided test of a rate plans for the direction in which an effect of ``mde`` is
possible at all (:func:`two_sided_difference`): from a baseline of 0.95 an increase of
0.1 cannot happen, so the plan is for a decrease of 0.1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import special

from rollwise.stats.estimates import z_quantile
from rollwise.stats.results import Alternative, check_alpha, check_alternative
from rollwise.stats.sequential import boundary, mixing_precision


@dataclass(frozen=True, slots=True)
class SampleSize:
    """Samples needed per arm (rounded up)."""

    n_control: int
    n_treatment: int

    @property
    def total(self) -> int:
        return self.n_control + self.n_treatment

    def duration_s(self, requests_per_s: float, treatment_percent: float) -> float:
        """Seconds until both arms have their samples at the given traffic and split."""
        if not requests_per_s > 0:
            raise ValueError(f"requests_per_s must be > 0, got {requests_per_s}")
        if not 0 < treatment_percent < 100:
            raise ValueError(f"treatment_percent must be in (0, 100), got {treatment_percent}")
        share = treatment_percent / 100.0
        return max(
            self.n_treatment / (requests_per_s * share),
            self.n_control / (requests_per_s * (1.0 - share)),
        )


def _check_plan(mde: float, alpha: float, power: float, ratio: float) -> None:
    check_alpha(alpha)
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power}")
    if mde == 0.0 or not math.isfinite(mde):
        raise ValueError(f"minimum detectable effect must be non-zero, got {mde}")
    if not ratio > 0.0:
        raise ValueError(f"ratio n_treatment / n_control must be > 0, got {ratio}")


def _tail_alpha(alpha: float, alternative: Alternative) -> float:
    return alpha / 2.0 if check_alternative(alternative) == "two-sided" else alpha


def _size(n_treatment: float, ratio: float) -> SampleSize:
    return SampleSize(math.ceil(n_treatment / ratio - 1e-9), math.ceil(n_treatment - 1e-9))


def proportions_sd(baseline: float, mde: float, ratio: float) -> tuple[float, float]:
    """``(σ_0, σ_1)`` per treatment sample for a difference of proportions."""
    p_c, p_t = baseline, baseline + mde
    if not (0.0 < p_c < 1.0 and 0.0 < p_t < 1.0):
        raise ValueError(f"baseline {baseline} and baseline + mde {p_t} must be in (0, 1)")
    pooled = (ratio * p_t + p_c) / (1.0 + ratio)
    sd_null = math.sqrt(pooled * (1.0 - pooled) * (1.0 + ratio))
    sd_alt = math.sqrt(p_t * (1.0 - p_t) + ratio * p_c * (1.0 - p_c))
    return sd_null, sd_alt


def two_sided_difference(baseline: float, mde: float) -> float:
    """The signed difference of rates a two-sided test plans to detect, for an effect of
    magnitude ``mde`` from the rate ``baseline``.

    A rate stays within (0, 1), so from a baseline near one end an effect of ``mde``
    can happen in one direction only: the plan is then made for that direction
    (``+mde`` while ``baseline + mde < 1``, else ``-mde``). Neither direction possible
    is a ``ValueError`` naming the values.
    """
    if not 0.0 < baseline < 1.0:
        raise ValueError(f"baseline rate must be in (0, 1), got {baseline:g}")
    if not (mde > 0.0 and math.isfinite(mde)):
        raise ValueError(f"minimum detectable effect must be a magnitude > 0, got {mde:g}")
    if baseline + mde < 1.0:
        return mde
    if baseline - mde > 0.0:
        return -mde
    raise ValueError(
        f"an effect of {mde:g} from a baseline rate of {baseline:g} is impossible in both "
        f"directions ({baseline:g} + {mde:g} >= 1 and {baseline:g} - {mde:g} <= 0); "
        f"an mde below {max(baseline, 1.0 - baseline):g} can be planned"
    )


def sample_size_proportions(
    baseline: float,
    mde: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: Alternative = "two-sided",
) -> SampleSize:
    """Fixed-horizon samples per arm to detect ``p_t - p_c = mde`` from ``p_c = baseline``."""
    _check_plan(mde, alpha, power, ratio)
    sd_null, sd_alt = proportions_sd(baseline, mde, ratio)
    z_a, z_b = z_quantile(1.0 - _tail_alpha(alpha, alternative)), z_quantile(power)
    n_t = ((z_a * sd_null + z_b * sd_alt) / mde) ** 2
    return _size(n_t, ratio)


def power_proportions(
    baseline: float,
    mde: float,
    n_control: int,
    n_treatment: int,
    *,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> float:
    """Power of the pooled two-proportion z-test at the given sample sizes."""
    ratio = n_treatment / n_control
    _check_plan(mde, alpha, 0.5, ratio)
    sd_null, sd_alt = proportions_sd(baseline, mde, ratio)
    return _normal_power(mde, n_treatment, sd_null, sd_alt, alpha, alternative)


def sample_size_means(
    sd: float,
    mde: float,
    *,
    sd_treatment: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: Alternative = "two-sided",
) -> SampleSize:
    """Fixed-horizon samples per arm to detect a difference of means ``mde``.

    ``sd`` is the control's standard deviation, ``sd_treatment`` the treatment's (the same
    when omitted).
    """
    _check_plan(mde, alpha, power, ratio)
    sd_t = sd if sd_treatment is None else sd_treatment
    if not (sd > 0 and sd_t > 0):
        raise ValueError("standard deviations must be > 0")
    sigma = math.sqrt(sd_t**2 + ratio * sd**2)
    z_a, z_b = z_quantile(1.0 - _tail_alpha(alpha, alternative)), z_quantile(power)
    return _size(((z_a + z_b) * sigma / mde) ** 2, ratio)


def _normal_power(
    mde: float,
    n_treatment: float,
    sd_null: float,
    sd_alt: float,
    alpha: float,
    alternative: Alternative,
) -> float:
    alternative = check_alternative(alternative)
    tail = _tail_alpha(alpha, alternative)
    crit = z_quantile(1.0 - tail)
    shift = mde * math.sqrt(n_treatment) / sd_alt
    ratio = sd_null / sd_alt
    power = 0.0
    if alternative in ("two-sided", "greater"):
        power += float(special.ndtr(shift - crit * ratio))
    if alternative in ("two-sided", "less"):
        power += float(special.ndtr(-crit * ratio - shift))
    return power


def sequential_sample_size(
    mde: float,
    unit_sd: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: Alternative = "two-sided",
) -> float:
    """Effective samples per arm for the confidence sequence to detect ``mde``.

    ``unit_sd`` is the standard deviation of one effective observation of the contrast
    (``se·√n_eff``; ``√(σ_t² + σ_c²)`` for a balanced difference of means). The mixture
    is tuned to the returned horizon, as :func:`rollwise.analysis` tunes it.
    """
    _check_plan(mde, alpha, power, 1.0)
    if not unit_sd > 0:
        raise ValueError(f"unit_sd must be > 0, got {unit_sd}")
    level = _tail_alpha(alpha, alternative)
    z_b = z_quantile(power)
    effect = abs(mde) / unit_sd

    def margin(t: float) -> float:
        b = boundary(t, level, mixing_precision(t, level))
        return effect * math.sqrt(t) - b / math.sqrt(t) - z_b

    lo, hi = 1.0, 2.0
    while margin(hi) < 0.0:
        lo, hi = hi, hi * 2.0
        if hi > 1e15:
            raise ValueError("effect too small to plan for")
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        if margin(mid) < 0.0:
            lo = mid
        else:
            hi = mid
        if hi / lo < 1 + 1e-9:
            break
    return hi


def sequential_sample_size_proportions(
    baseline: float,
    mde: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: Alternative = "two-sided",
) -> SampleSize:
    """Samples per arm (balanced) for the sequential proportion test to detect ``mde``."""
    _check_plan(mde, alpha, power, 1.0)
    _, sd_alt = proportions_sd(baseline, mde, 1.0)
    n = sequential_sample_size(mde, sd_alt, alpha=alpha, power=power, alternative=alternative)
    return _size(n, 1.0)


def sequential_sample_size_means(
    sd: float,
    mde: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: Alternative = "two-sided",
) -> SampleSize:
    """Samples per arm (balanced, equal variances) for the sequential mean test."""
    if not sd > 0:
        raise ValueError("standard deviation must be > 0")
    n = sequential_sample_size(
        mde, math.sqrt(2.0) * sd, alpha=alpha, power=power, alternative=alternative
    )
    return _size(n, 1.0)
