"""Bayesian chance to beat control and expected loss, for proportions and for means.

These are what an A/B report shows next to the p-value: "the candidate is better with
probability 97 %, and choosing it costs at most 0.01 points in expectation if wrong".
They describe the posterior; they do not control error rates under repeated looks, so
rollwise decides with the frequentist tests and reports these alongside.

Proportions (Beta-Binomial): with a ``Beta(a, b)`` prior, arm posteriors are
``Beta(a + x, b + n - x)``. The chance to beat is
``P(p_t > p_c) = ∫₀¹ 1 - F_t(F_c⁻¹(s)) ds`` and the expected loss of choosing the
treatment is ``E[max(p_c - p_t, 0)] = ∫₀¹ g(F_c⁻¹(s)) ds`` with
``g(c) = c·I_c(a_t, b_t) - μ_t·I_c(a_t + 1, b_t)`` (``I`` the regularised incomplete beta,
``μ_t`` the treatment's posterior mean), both by adaptive quadrature. A closed-form sum for
integer parameters (Miller 2015, "Formulas for Bayesian A/B testing") serves as the test
oracle. The credible interval for ``p_t - p_c`` uses the normal approximation with the
exact posterior means and variances, or Monte Carlo draws when ``rng`` is given.

Means (normal approximation, flat prior): ``μ_t - μ_c | data ≈ N(x̄_t - x̄_c, se²)`` with
``se² = s_t²/n_t + s_c²/n_c`` (Gelman et al., *Bayesian Data Analysis*, 3rd ed., §3.2, at
large n). Then ``P(better) = Φ(d/se)`` and the expected loss of choosing the treatment is
``se·φ(d/se) - d·Φ(-d/se)`` (for ``higher_is_better``; signs flip otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import integrate, special

from rollwise.stats.estimates import z_quantile
from rollwise.stats.results import Interval, check_alpha

DEFAULT_DRAWS = 100_000


@dataclass(frozen=True, slots=True)
class BayesResult:
    """Posterior summary of treatment versus control.

    ``prob_better`` is the probability that the treatment is better (higher, or lower
    when lower is better); the losses are the expected shortfall of choosing each arm.
    """

    method: str
    estimate: float
    interval: Interval
    prob_better: float
    expected_loss_treatment: float
    expected_loss_control: float
    n_control: int
    n_treatment: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "estimate": self.estimate,
            "interval": self.interval.to_dict(),
            "prob_better": self.prob_better,
            "expected_loss_treatment": self.expected_loss_treatment,
            "expected_loss_control": self.expected_loss_control,
            "n_control": self.n_control,
            "n_treatment": self.n_treatment,
        }


def _prob_greater(a_t: float, b_t: float, a_c: float, b_c: float) -> float:
    """P(T > C) for independent T ~ Beta(a_t, b_t), C ~ Beta(a_c, b_c)."""

    def integrand(s: float) -> float:
        c = float(special.betaincinv(a_c, b_c, s))
        return 1.0 - float(special.betainc(a_t, b_t, c))

    value, _ = integrate.quad(integrand, 0.0, 1.0, epsabs=1e-11, epsrel=1e-10, limit=200)
    return min(1.0, max(0.0, float(value)))


def _expected_shortfall(a_t: float, b_t: float, a_c: float, b_c: float) -> float:
    """E[max(C - T, 0)] for independent T ~ Beta(a_t, b_t), C ~ Beta(a_c, b_c)."""
    mean_t = a_t / (a_t + b_t)

    def integrand(s: float) -> float:
        c = float(special.betaincinv(a_c, b_c, s))
        return c * float(special.betainc(a_t, b_t, c)) - mean_t * float(
            special.betainc(a_t + 1.0, b_t, c)
        )

    value, _ = integrate.quad(integrand, 0.0, 1.0, epsabs=1e-12, epsrel=1e-10, limit=200)
    return max(0.0, float(value))


def beta_binomial(
    x_control: int,
    n_control: int,
    x_treatment: int,
    n_treatment: int,
    *,
    higher_is_better: bool = True,
    prior: tuple[float, float] = (1.0, 1.0),
    alpha: float = 0.05,
    rng: np.random.Generator | None = None,
    draws: int = DEFAULT_DRAWS,
) -> BayesResult:
    """Chance to beat control and expected losses for two proportions."""
    for x, n in ((x_control, n_control), (x_treatment, n_treatment)):
        if n < 0 or not 0 <= x <= n:
            raise ValueError(f"bad counts x={x}, n={n}")
    a0, b0 = prior
    if not (a0 > 0 and b0 > 0):
        raise ValueError(f"prior parameters must be > 0, got {prior}")
    check_alpha(alpha)
    a_c, b_c = a0 + x_control, b0 + n_control - x_control
    a_t, b_t = a0 + x_treatment, b0 + n_treatment - x_treatment
    p_t_greater = _prob_greater(a_t, b_t, a_c, b_c)
    loss_t_if_higher = _expected_shortfall(a_t, b_t, a_c, b_c)  # E[max(C - T, 0)]
    loss_c_if_higher = _expected_shortfall(a_c, b_c, a_t, b_t)  # E[max(T - C, 0)]
    mean_t, mean_c = a_t / (a_t + b_t), a_c / (a_c + b_c)
    if rng is not None:
        diff = rng.beta(a_t, b_t, size=draws) - rng.beta(a_c, b_c, size=draws)
        low, high = np.quantile(diff, [alpha / 2.0, 1.0 - alpha / 2.0])
        interval = Interval(float(low), float(high), 1.0 - alpha)
    else:
        var = _beta_var(a_t, b_t) + _beta_var(a_c, b_c)
        half = z_quantile(1.0 - alpha / 2.0) * math.sqrt(var)
        interval = Interval(mean_t - mean_c - half, mean_t - mean_c + half, 1.0 - alpha)
    if higher_is_better:
        prob, loss_t, loss_c = p_t_greater, loss_t_if_higher, loss_c_if_higher
    else:
        prob, loss_t, loss_c = 1.0 - p_t_greater, loss_c_if_higher, loss_t_if_higher
    return BayesResult(
        method="beta-binomial",
        estimate=mean_t - mean_c,
        interval=interval,
        prob_better=prob,
        expected_loss_treatment=loss_t,
        expected_loss_control=loss_c,
        n_control=n_control,
        n_treatment=n_treatment,
    )


def _beta_var(a: float, b: float) -> float:
    return a * b / ((a + b) ** 2 * (a + b + 1.0))


def normal_means(
    n_control: int,
    mean_control: float,
    var_control: float,
    n_treatment: int,
    mean_treatment: float,
    var_treatment: float,
    *,
    higher_is_better: bool = True,
    alpha: float = 0.05,
) -> BayesResult:
    """Chance to beat control and expected losses for two means (normal approximation)."""
    for n, v in ((n_control, var_control), (n_treatment, var_treatment)):
        if n < 2 or not v >= 0:
            raise ValueError(f"each arm needs n >= 2 and a variance >= 0, got n={n}, var={v}")
    check_alpha(alpha)
    d = mean_treatment - mean_control
    se = math.sqrt(var_treatment / n_treatment + var_control / n_control)
    gain = d if higher_is_better else -d
    if se > 0:
        prob = float(special.ndtr(gain / se))
        loss_t = _normal_shortfall(gain, se)
        loss_c = _normal_shortfall(-gain, se)
    else:
        prob = 1.0 if gain > 0 else 0.0 if gain < 0 else 0.5
        loss_t, loss_c = max(-gain, 0.0), max(gain, 0.0)
    half = z_quantile(1.0 - alpha / 2.0) * se
    return BayesResult(
        method="normal means",
        estimate=d,
        interval=Interval(d - half, d + half, 1.0 - alpha),
        prob_better=prob,
        expected_loss_treatment=loss_t,
        expected_loss_control=loss_c,
        n_control=n_control,
        n_treatment=n_treatment,
    )


def _normal_shortfall(mu: float, sigma: float) -> float:
    """E[max(-D, 0)] for D ~ N(mu, sigma²)."""
    r = mu / sigma
    pdf = math.exp(-0.5 * r * r) / math.sqrt(2.0 * math.pi)
    return sigma * pdf - mu * float(special.ndtr(-r))
