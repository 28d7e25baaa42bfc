"""Tests and intervals for proportions: error rate, accuracy, shadow agreement.

Inputs are counts (successes ``x`` out of ``n`` trials), so the functions work on
summed metric buckets. Formulas:

* two-proportion z-test of ``p_t - p_c = d0``: ``z = (p̂_t - p̂_c - d0) / se`` with the
  pooled variance ``p̄(1-p̄)(1/n_t + 1/n_c)`` when ``d0 = 0`` (the classical test, Fleiss,
  Levin & Paik, *Statistical Methods for Rates and Proportions*, 3rd ed., §2.6.2) and the
  unpooled Wald variance ``p̂_t(1-p̂_t)/n_t + p̂_c(1-p̂_c)/n_c`` for a non-zero margin, where
  pooling would assume the very equality that is not the null;
* interval for the difference: Newcomb's hybrid score interval (default; Newcomb 1998,
  "Interval estimation for the difference between independent proportions", *Stat. Med.*
  17:873, method 10), which behaves at zero counts where Wald collapses; Wald and
  Agresti-Caffo (add one success and one failure per arm; Agresti & Caffo 2000,
  *Am. Stat.* 54:280) on request;
* one proportion: the score test ``z = (p̂ - p0) / sqrt(p0(1-p0)/n)`` and its inversion,
  the Wilson interval (Wilson 1927, *JASA* 22:209).

Degenerate data: when both arms are all failures (or all successes) the pooled variance
is zero and the observed difference is exactly zero, so ``z = 0`` and ``p = 1``.
"""

from __future__ import annotations

import math
from typing import Literal

from rollwise.stats.estimates import (
    Estimate,
    difference,
    z_interval,
    z_p_value,
    z_quantile,
    z_statistic,
)
from rollwise.stats.results import (
    Alternative,
    InferenceResult,
    Interval,
    check_alpha,
    check_alternative,
)

CiMethod = Literal["newcomb", "wald", "agresti-caffo"]
CI_METHODS: tuple[CiMethod, ...] = ("newcomb", "wald", "agresti-caffo")

PSEUDO_COUNT = 1.0
"""Successes and failures added per arm in :func:`proportion_estimate` (Agresti-Caffo)."""


def check_counts(x: int, n: int, name: str = "") -> None:
    label = f"{name} " if name else ""
    if n < 0 or x < 0:
        raise ValueError(f"{label}counts must be >= 0, got x={x}, n={n}")
    if x > n:
        raise ValueError(f"{label}successes {x} exceed trials {n}")


def _check_arms(x_c: int, n_c: int, x_t: int, n_t: int) -> None:
    check_counts(x_c, n_c, "control")
    check_counts(x_t, n_t, "treatment")
    if n_c == 0 or n_t == 0:
        raise ValueError("each arm needs at least one trial")


def wilson_interval(x: int, n: int, alpha: float = 0.05) -> Interval:
    """Two-sided Wilson score interval for one proportion."""
    check_counts(x, n)
    check_alpha(alpha)
    if n == 0:
        return Interval(0.0, 1.0, 1.0 - alpha)
    z = z_quantile(1.0 - alpha / 2.0)
    p = x / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    # At x = 0 or x = n the interval ends exactly at 0 or 1 (centre ∓ half), which
    # rounding would miss by an ulp and so exclude the rate observed.
    low = 0.0 if x == 0 else max(0.0, centre - half)
    high = 1.0 if x == n else min(1.0, centre + half)
    return Interval(low, high, 1.0 - alpha)


def one_proportion_ztest(
    x: int,
    n: int,
    *,
    null_value: float,
    alternative: Alternative = "two-sided",
    alpha: float = 0.05,
) -> InferenceResult:
    """Score test of ``p == null_value`` for one proportion, with the Wilson interval."""
    check_counts(x, n)
    alternative = check_alternative(alternative)
    check_alpha(alpha)
    if n == 0:
        raise ValueError("a proportion needs at least one trial")
    if not 0.0 < null_value < 1.0:
        raise ValueError(f"null proportion must be in (0, 1), got {null_value}")
    p = x / n
    z = (p - null_value) / math.sqrt(null_value * (1.0 - null_value) / n)
    if alternative == "two-sided":
        interval = wilson_interval(x, n, alpha)
    else:
        one = wilson_interval(x, n, 2.0 * alpha)
        low, high = (one.low, 1.0) if alternative == "greater" else (0.0, one.high)
        interval = Interval(low, high, 1.0 - alpha)
    return InferenceResult(
        method="one-proportion score test",
        estimate=p,
        interval=interval,
        p_value=z_p_value(z, alternative),
        statistic=z,
        alpha=alpha,
        alternative=alternative,
        null_value=null_value,
        n_control=0,
        n_treatment=n,
    )


def difference_interval(
    x_control: int,
    n_control: int,
    x_treatment: int,
    n_treatment: int,
    *,
    alpha: float = 0.05,
    method: CiMethod = "newcomb",
    alternative: Alternative = "two-sided",
) -> Interval:
    """Interval for ``p_t - p_c`` of level ``1 - alpha`` (one-sided ends are ±1)."""
    _check_arms(x_control, n_control, x_treatment, n_treatment)
    check_alpha(alpha)
    alternative = check_alternative(alternative)
    two_sided_alpha = alpha if alternative == "two-sided" else 2.0 * alpha
    low, high = _two_sided_difference_interval(
        x_control, n_control, x_treatment, n_treatment, two_sided_alpha, method
    )
    if alternative == "greater":
        high = 1.0
    elif alternative == "less":
        low = -1.0
    return Interval(low, high, 1.0 - alpha)


def _two_sided_difference_interval(
    x_c: int, n_c: int, x_t: int, n_t: int, alpha: float, method: CiMethod
) -> tuple[float, float]:
    if method == "newcomb":
        p_t, p_c = x_t / n_t, x_c / n_c
        w_t, w_c = wilson_interval(x_t, n_t, alpha), wilson_interval(x_c, n_c, alpha)
        diff = p_t - p_c
        below = math.hypot(p_t - w_t.low, w_c.high - p_c)
        above = math.hypot(w_t.high - p_t, p_c - w_c.low)
        # Exact arithmetic keeps Newcomb's ends within [-1, 1]; rounding may not.
        return max(diff - below, -1.0), min(diff + above, 1.0)
    if method == "wald":
        p_t, p_c = x_t / n_t, x_c / n_c
        se = math.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c)
        ci = z_interval(p_t - p_c, se, alpha)
        return ci.low, ci.high
    if method == "agresti-caffo":
        est = difference(proportion_estimate(x_c, n_c), proportion_estimate(x_t, n_t))
        ci = z_interval(est.value, est.se, alpha)
        return ci.low, ci.high
    raise ValueError(f"ci_method must be one of {CI_METHODS}, got {method!r}")


def two_proportion_ztest(
    x_control: int,
    n_control: int,
    x_treatment: int,
    n_treatment: int,
    *,
    null_diff: float = 0.0,
    alternative: Alternative = "two-sided",
    alpha: float = 0.05,
    ci_method: CiMethod = "newcomb",
) -> InferenceResult:
    """Two-proportion z-test of ``p_t - p_c == null_diff`` with an interval for the difference.

    The p-value uses the pooled variance for ``null_diff == 0`` and the unpooled Wald
    variance otherwise (see the module docstring). The interval comes from ``ci_method``
    and so need not match the test exactly at the boundary; both are reported as is.
    """
    _check_arms(x_control, n_control, x_treatment, n_treatment)
    alternative = check_alternative(alternative)
    check_alpha(alpha)
    p_t, p_c = x_treatment / n_treatment, x_control / n_control
    diff = p_t - p_c
    if null_diff == 0.0:
        pooled = (x_treatment + x_control) / (n_treatment + n_control)
        se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_treatment + 1.0 / n_control))
        method = "two-proportion z-test (pooled)"
    else:
        se = math.sqrt(p_t * (1.0 - p_t) / n_treatment + p_c * (1.0 - p_c) / n_control)
        method = "two-proportion z-test (Wald)"
    z = z_statistic(Estimate(diff, se, 1.0), null_diff)
    interval = difference_interval(
        x_control,
        n_control,
        x_treatment,
        n_treatment,
        alpha=alpha,
        method=ci_method,
        alternative=alternative,
    )
    return InferenceResult(
        method=method,
        estimate=diff,
        interval=interval,
        p_value=z_p_value(z, alternative),
        statistic=z,
        alpha=alpha,
        alternative=alternative,
        null_value=null_diff,
        n_control=n_control,
        n_treatment=n_treatment,
        extra={"rate_control": p_c, "rate_treatment": p_t},
    )


def proportion_estimate(x: int, n: int, pseudo: float = PSEUDO_COUNT) -> Estimate:
    """A proportion as an :class:`Estimate`, shrunk by ``pseudo`` successes and failures.

    ``p̃ = (x + pseudo) / (n + 2·pseudo)`` and ``se = sqrt(p̃(1-p̃) / (n + 2·pseudo))``:
    the Agresti-Caffo adjustment, so that zero counts never give a zero standard error
    (a Wald interval of width zero would pass a gate on no evidence).
    """
    check_counts(x, n)
    if pseudo < 0:
        raise ValueError(f"pseudo count must be >= 0, got {pseudo}")
    m = n + 2.0 * pseudo
    if m <= 0:
        raise ValueError("a proportion needs at least one trial or a pseudo count")
    p = (x + pseudo) / m
    return Estimate(p, math.sqrt(p * (1.0 - p) / m), m)
