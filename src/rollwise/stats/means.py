"""Welch's t-test for means given as summary statistics (n, mean, variance) per arm.

Used for regression error (MAE), reward and mean latency, whose buckets carry counts,
sums and sums of squares rather than raw values.

Formulas (Welch 1947, "The generalization of 'Student's' problem when several different
population variances are involved", *Biometrika* 34:28):

* ``se² = s_t²/n_t + s_c²/n_c``, ``t = (x̄_t - x̄_c - d0) / se``;
* Welch-Satterthwaite degrees of freedom
  ``ν = se⁴ / ((s_t²/n_t)²/(n_t-1) + (s_c²/n_c)²/(n_c-1))``;
* interval ``x̄_t - x̄_c ± t_{ν, 1-α/2} · se``.

Degenerate data: when both sample variances are zero, ``se = 0``; then ``t`` is 0 if the
difference equals ``d0`` (p = 1) and ±inf otherwise, ``ν = n_t + n_c - 2`` and the
interval is the single point of the observed difference.
"""

from __future__ import annotations

import math

from scipy import stats as sps

from rollwise.stats.estimates import Estimate, z_statistic
from rollwise.stats.results import (
    Alternative,
    InferenceResult,
    Interval,
    check_alpha,
    check_alternative,
)


def moments_from_sums(n: int, total: float, total_sq: float) -> tuple[float, float]:
    """``(mean, sample variance with ddof=1)`` from a count, a sum and a sum of squares.

    Rounding can make the variance of near-constant data slightly negative; it is
    clipped at zero. The variance is NaN below two values.
    """
    if n <= 0:
        raise ValueError(f"need at least one value, got n={n}")
    mean = total / n
    if n < 2:
        return mean, math.nan
    var = (total_sq - total * mean) / (n - 1)
    return mean, max(var, 0.0)


def _check_arm(n: int, var: float, name: str) -> None:
    if n < 2:
        raise ValueError(f"{name} needs at least two values for a variance, got n={n}")
    if not var >= 0.0:
        raise ValueError(f"{name} variance must be >= 0, got {var}")


def welch_ttest(
    n_control: int,
    mean_control: float,
    var_control: float,
    n_treatment: int,
    mean_treatment: float,
    var_treatment: float,
    *,
    null_diff: float = 0.0,
    alternative: Alternative = "two-sided",
    alpha: float = 0.05,
) -> InferenceResult:
    """Welch's unequal-variance t-test of ``mean_t - mean_c == null_diff``.

    Variances are sample variances (ddof=1). Matches ``scipy.stats.ttest_ind_from_stats``
    with ``equal_var=False`` (after shifting by ``null_diff``).
    """
    _check_arm(n_control, var_control, "control")
    _check_arm(n_treatment, var_treatment, "treatment")
    alternative = check_alternative(alternative)
    check_alpha(alpha)
    vt, vc = var_treatment / n_treatment, var_control / n_control
    se = math.sqrt(vt + vc)
    diff = mean_treatment - mean_control
    if se > 0.0:
        # Written with variance shares so that tiny variances cannot underflow to 0/0.
        share_t, share_c = vt / (vt + vc), vc / (vt + vc)
        df = 1.0 / (share_t**2 / (n_treatment - 1) + share_c**2 / (n_control - 1))
    else:
        df = float(n_treatment + n_control - 2)
    t = z_statistic(Estimate(diff, se, 1.0), null_diff)
    dist = sps.t(df)
    if alternative == "greater":
        p = float(dist.sf(t))
        interval = Interval(diff - float(dist.ppf(1 - alpha)) * se, math.inf, 1 - alpha)
    elif alternative == "less":
        p = float(dist.cdf(t))
        interval = Interval(-math.inf, diff + float(dist.ppf(1 - alpha)) * se, 1 - alpha)
    else:
        p = min(1.0, 2.0 * float(dist.sf(abs(t))))
        half = float(dist.ppf(1 - alpha / 2)) * se
        interval = Interval(diff - half, diff + half, 1 - alpha)
    return InferenceResult(
        method="Welch t-test",
        estimate=diff,
        interval=interval,
        p_value=p,
        statistic=t,
        alpha=alpha,
        alternative=alternative,
        null_value=null_diff,
        n_control=n_control,
        n_treatment=n_treatment,
        extra={"df": df, "se": se, "mean_control": mean_control, "mean_treatment": mean_treatment},
    )


def mean_estimate(n: int, mean: float, var: float) -> Estimate:
    """A sample mean as an :class:`Estimate` (``se = sqrt(var / n)``)."""
    _check_arm(n, var, "sample")
    return Estimate(mean, math.sqrt(var / n), float(n))
