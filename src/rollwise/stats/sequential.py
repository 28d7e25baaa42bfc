"""Always-valid inference: confidence sequences and e-values that survive peeking.

The controller looks at every gate at every tick. A fixed-horizon test checked that
often rejects a true null far more often than ``alpha`` (the "peeking problem",
Johari, Koomen, Pekelis & Walsh 2022, "Always valid inference: continuous monitoring of
A/B tests", *Operations Research* 70:1806). The methods here hold their error rate
uniformly over time: ``P(the interval ever misses the truth) ≤ alpha``.

Method: *asymptotic confidence sequences* (Waudby-Smith, Arnold, Wu, Wang & Ramdas
2024, "Time-uniform central limit theory and asymptotic confidence sequences", *Annals
of Statistics* 52:2613) with a normal-mixture boundary (Robbins 1970; Howard, Ramdas,
McAuliffe & Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic confidence
sequences", *Annals of Statistics* 49:1055). Every comparison is reduced to an
:class:`~rollwise.stats.estimates.Estimate` ``θ̂`` with standard error ``se`` and
effective sample size ``t``. Under ``θ = θ0`` the standardised sum
``S_t = z_t·√t`` (``z = (θ̂ - θ0)/se``) behaves like a Brownian motion in ``t``; mixing the
exponential martingales ``exp(λS - λ²t/2)`` over a half-normal ``λ ≥ 0`` of precision ``ρ``
gives the one-sided e-process

    ``E_t = 2·√(ρ/(t+ρ)) · exp(S²/(2(t+ρ))) · Φ(S/√(t+ρ))``

(Howard et al. 2021, Proposition 6). By Ville's inequality ``P(∃t: E_t ≥ 1/α) ≤ α``, and
since ``λ ≥ 0`` the same process is a supermartingale for every ``θ < θ0``: it tests the
*composite* null ``θ ≤ θ0``, which is what a non-inferiority gate needs ("the candidate's
error rate is at most 0.5 points above stable"). Solving ``E_t = 1/α`` for ``S`` gives the
boundary ``b_α(t)``; the lower confidence bound is ``θ̂ - b_α(t)·se/√t``.

Why confidence sequences rather than a classical mSPRT: the mSPRT of Johari et al.
tests one point null; its normal mixture is the two-sided version of the same
martingale. Gates compare against margins, absolute bounds and ratios, so they need an
interval valid for every null at once, for one-sided composite nulls, and for any
asymptotically normal statistic (proportions, means, quantiles via Woodruff, PSI) with
plug-in variances; the e-value at the gate's bound is reported alongside.

Tuning: ``ρ = t* / (2·log(1/α) + log(1 + 2·log(1/α)))`` makes the boundary tightest near
the planned effective sample size ``t*`` (Waudby-Smith et al. 2024, §3.2); the width is
insensitive to it within an order of magnitude. Validity is asymptotic: the plug-in
variance must have settled, which is why every gate has a minimum sample size.

For the distance between two distributions (KS) there is a nonasymptotic
time-uniform DKW band (Howard & Ramdas 2022, "Sequential estimation of quantiles with
applications to A/B-testing and best-arm identification", *Bernoulli* 28:1704,
Theorem 2): ``sup_x |F̂_t(x) - F(x)| ≤ 0.85·√((log log(e·t) + 0.8·log(1612/α))/t)`` for all
``t ≥ 1`` with probability at least ``1 - α``.

Decisions made from these quantities are valid at the first time they are reached; a
caller acts on the first crossing (roll back, promote) and does not need to remember
past looks.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import special

from rollwise.stats.estimates import Estimate
from rollwise.stats.results import (
    Alternative,
    InferenceResult,
    Interval,
    check_alpha,
    check_alternative,
)

DEFAULT_HORIZON = 1000.0
"""Effective samples per arm at which the boundary is tuned to be tightest."""

_LOG2 = math.log(2.0)


def mixing_precision(horizon: float, alpha: float) -> float:
    """The mixture precision ``ρ`` that makes the boundary tightest near ``horizon``."""
    if not horizon > 0:
        raise ValueError(f"horizon must be > 0, got {horizon}")
    check_alpha(alpha)
    two_log = 2.0 * math.log(1.0 / alpha)
    return horizon / (two_log + math.log(1.0 + two_log))


def log_e_value(s: float, t: float, rho: float) -> float:
    """Log of the one-sided normal-mixture e-process at standardised sum ``s``, time ``t``."""
    v = t + rho
    u = s / math.sqrt(v)
    return _LOG2 + 0.5 * math.log(rho / v) + 0.5 * u * u + float(special.log_ndtr(u))


def boundary(t: float, alpha: float, rho: float) -> float:
    """``b`` with ``E_t = 1/alpha`` at ``S = b``: the one-sided crossing point of ``S_t``."""
    return float(boundaries(np.array([t], dtype=np.float64), alpha, rho)[0])


def boundaries(t: NDArray[np.float64], alpha: float, rho: float) -> NDArray[np.float64]:
    """Vectorised :func:`boundary`, for simulations.

    Solves ``u²/2 + log Φ(u) = c`` with ``c = log(1/α) - log 2 - ½·log(ρ/(t+ρ))`` for
    ``u = S/√(t+ρ)``. The left side is increasing and convex in ``u``, so Newton's method
    started to the right of the root (where it is at least ``c``) converges monotonically.
    """
    check_alpha(alpha)
    v = np.asarray(t, dtype=np.float64) + rho
    c = math.log(1.0 / alpha) - _LOG2 - 0.5 * np.log(rho / v)
    u = np.sqrt(2.0 * (np.maximum(c, 0.0) + _LOG2))
    for _ in range(100):
        log_cdf = special.log_ndtr(u)
        f = 0.5 * u * u + log_cdf - c
        mills = np.exp(-0.5 * u * u - log_cdf) / math.sqrt(2.0 * math.pi)
        step = f / (u + mills)
        u = u - step
        if np.all(np.abs(step) < 1e-12 * np.maximum(1.0, np.abs(u))):
            break
    result: NDArray[np.float64] = u * np.sqrt(v)
    return result


def radius(estimate: Estimate, alpha: float, horizon: float = DEFAULT_HORIZON) -> float:
    """Half-width, in the estimate's units, of a one-sided level-``alpha`` bound."""
    rho = mixing_precision(horizon, alpha)
    t = estimate.n_eff
    return boundary(t, alpha, rho) * estimate.se / math.sqrt(t)


def confidence_sequence(
    estimate: Estimate,
    *,
    alpha: float = 0.05,
    horizon: float = DEFAULT_HORIZON,
    alternative: Alternative = "two-sided",
) -> Interval:
    """Confidence sequence of level ``1 - alpha`` for the estimated quantity.

    Two-sided: each end is a one-sided bound of level ``alpha / 2``. One-sided: one end
    of level ``alpha``, the other infinite.
    """
    alternative = check_alternative(alternative)
    check_alpha(alpha)
    if alternative == "two-sided":
        r = radius(estimate, alpha / 2.0, horizon)
        return Interval(estimate.value - r, estimate.value + r, 1.0 - alpha)
    r = radius(estimate, alpha, horizon)
    if alternative == "greater":
        return Interval(estimate.value - r, math.inf, 1.0 - alpha)
    return Interval(-math.inf, estimate.value + r, 1.0 - alpha)


def e_value(
    estimate: Estimate,
    null_value: float,
    *,
    alternative: Alternative,
    alpha: float = 0.05,
    horizon: float = DEFAULT_HORIZON,
) -> float:
    """E-value against ``θ ≤ null`` (``greater``), ``θ ≥ null`` (``less``) or ``θ = null``.

    Two-sided: half the larger one-sided e-value at ``alpha / 2``'s tuning, so that it
    reaches ``1/alpha`` exactly when the two-sided confidence sequence excludes the null.
    """
    alternative = check_alternative(alternative)
    level = alpha / 2.0 if alternative == "two-sided" else alpha
    rho = mixing_precision(horizon, level)
    t = estimate.n_eff
    diff = estimate.value - null_value
    if estimate.se > 0.0:
        s = diff / estimate.se * math.sqrt(t)
    else:
        s = math.copysign(math.inf, diff) if diff else 0.0
    if alternative == "greater":
        return _exp(log_e_value(s, t, rho))
    if alternative == "less":
        return _exp(log_e_value(-s, t, rho))
    return 0.5 * _exp(max(log_e_value(s, t, rho), log_e_value(-s, t, rho)))


def _exp(log_value: float) -> float:
    if math.isnan(log_value):
        return 1.0
    if log_value > 709.0:  # beyond float range: overwhelming evidence
        return math.inf
    return math.exp(log_value)


def sequential_test(
    estimate: Estimate,
    *,
    null_value: float = 0.0,
    alternative: Alternative = "two-sided",
    alpha: float = 0.05,
    horizon: float = DEFAULT_HORIZON,
    method: str = "asymptotic confidence sequence",
    n_control: int = 0,
    n_treatment: int = 0,
) -> InferenceResult:
    """Anytime-valid test of ``θ`` against ``null_value``, with its confidence sequence.

    The p-value is ``min(1, 1/E)``; it is at most ``alpha`` exactly when the confidence
    sequence excludes the null, so the decision and the interval always agree.
    """
    alternative = check_alternative(alternative)
    check_alpha(alpha)
    e = e_value(estimate, null_value, alternative=alternative, alpha=alpha, horizon=horizon)
    interval = confidence_sequence(estimate, alpha=alpha, horizon=horizon, alternative=alternative)
    z = (estimate.value - null_value) / estimate.se if estimate.se > 0 else 0.0
    return InferenceResult(
        method=method,
        estimate=estimate.value,
        interval=interval,
        p_value=min(1.0, 1.0 / e) if e > 0 else 1.0,
        statistic=z,
        alpha=alpha,
        alternative=alternative,
        null_value=null_value,
        n_control=n_control,
        n_treatment=n_treatment,
        sequential=True,
        e_value=e,
        extra={"se": estimate.se, "n_eff": estimate.n_eff, "horizon": horizon},
    )


def dkw_radius(n: float, alpha: float) -> float:
    """Fixed-sample DKW radius ``√(log(2/α)/(2n))`` (Massart 1990, *Ann. Probab.* 18:1269)."""
    check_alpha(alpha)
    if not n > 0:
        raise ValueError(f"n must be > 0, got {n}")
    return math.sqrt(math.log(2.0 / alpha) / (2.0 * n))


def dkw_radius_uniform(n: float, alpha: float) -> float:
    """Time-uniform DKW radius of Howard & Ramdas (2022), valid at every ``n >= 1`` at once."""
    check_alpha(alpha)
    if not n >= 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return 0.85 * math.sqrt((math.log(math.log(math.e * n)) + 0.8 * math.log(1612.0 / alpha)) / n)
