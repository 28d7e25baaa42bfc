"""Monte Carlo checks of error rates when a test is looked at after every batch.

Each function simulates ``replicates`` independent experiments that observe ``looks``
batches per arm, applies every test after every batch (as the controller does at each
tick) and counts the experiments in which a test ever rejects. Under no effect that
count estimates the false-positive rate under peeking; under an effect, the power.
Everything is vectorised over experiments and looks, and all randomness comes from the
``rng`` argument, so runs are reproducible and fast enough for unit tests (small
settings) and for ``bench/stats_simulation.py`` (large ones).

Tests compared:

* ``sequential``: the asymptotic confidence sequence of :mod:`rollwise.stats.sequential`
  (two-sided, level α), rejecting when it excludes zero;
* ``naive``: the fixed-horizon test at level α applied at every look (the peeking
  mistake; its false-positive rate grows with the number of looks);
* ``fixed``: the fixed-horizon test applied once, at the last look (the honest
  single-look baseline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import special
from scipy import stats as sps

from rollwise.stats.proportions import PSEUDO_COUNT
from rollwise.stats.sequential import DEFAULT_HORIZON, boundaries, mixing_precision
from rollwise.stats.srm import DEFAULT_CONCENTRATION

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class RejectionRate:
    """How often a test rejected in ``replicates`` simulated experiments."""

    test: str
    rejections: int
    replicates: int

    @property
    def rate(self) -> float:
        return self.rejections / self.replicates

    @property
    def mc_se(self) -> float:
        """Monte Carlo standard error of :attr:`rate`: ``√(r(1-r)/R)``."""
        r = self.rate
        return math.sqrt(max(r * (1.0 - r), 1.0 / self.replicates) / self.replicates)

    def __str__(self) -> str:
        return f"{self.test}: {self.rate:.4f} ± {self.mc_se:.4f} (of {self.replicates})"


def _ever(reject: NDArray[np.bool_], test: str) -> RejectionRate:
    return RejectionRate(test, int(np.count_nonzero(reject.any(axis=1))), reject.shape[0])


def _sequential_reject(
    value: FloatArray, se: FloatArray, n_eff: FloatArray, alpha: float, horizon: float
) -> NDArray[np.bool_]:
    rho = mixing_precision(horizon, alpha / 2.0)
    bound = boundaries(n_eff.ravel(), alpha / 2.0, rho).reshape(n_eff.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.abs(value) / se * np.sqrt(n_eff)
    s = np.where(se > 0, s, np.where(value != 0, np.inf, 0.0))
    result: NDArray[np.bool_] = s >= bound
    return result


def simulate_proportions(
    rng: np.random.Generator,
    *,
    p_control: float,
    p_treatment: float,
    batch_control: int,
    batch_treatment: int,
    looks: int,
    replicates: int,
    alpha: float = 0.05,
    horizon: float = DEFAULT_HORIZON,
) -> dict[str, RejectionRate]:
    """Two proportions (error rate, accuracy): sequential vs naive vs fixed z-test."""
    x_c = np.cumsum(rng.binomial(batch_control, p_control, (replicates, looks)), axis=1)
    x_t = np.cumsum(rng.binomial(batch_treatment, p_treatment, (replicates, looks)), axis=1)
    n_c = batch_control * np.arange(1, looks + 1, dtype=np.float64)
    n_t = batch_treatment * np.arange(1, looks + 1, dtype=np.float64)
    # Agresti-Caffo estimates, as rollwise.stats.proportions.proportion_estimate builds them.
    m_c, m_t = n_c + 2 * PSEUDO_COUNT, n_t + 2 * PSEUDO_COUNT
    pc, pt = (x_c + PSEUDO_COUNT) / m_c, (x_t + PSEUDO_COUNT) / m_t
    var_c, var_t = pc * (1 - pc) / m_c, pt * (1 - pt) / m_t
    se = np.sqrt(var_c + var_t)
    n_eff = (var_c * m_c + var_t * m_t) / (var_c + var_t)
    sequential = _sequential_reject(pt - pc, se, n_eff, alpha, horizon)
    pooled = (x_c + x_t) / (n_c + n_t)
    se_pooled = np.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    raw = x_t / n_t - x_c / n_c
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se_pooled > 0, raw / se_pooled, 0.0)
    crit = float(special.ndtri(1 - alpha / 2))
    naive = np.abs(z) >= crit
    return {
        "sequential": _ever(sequential, "sequential confidence sequence"),
        "naive": _ever(naive, "naive z-test at every look"),
        "fixed": _ever(naive[:, -1:], "fixed z-test at the last look"),
    }


def simulate_means(
    rng: np.random.Generator,
    *,
    mean_control: float,
    mean_treatment: float,
    sd_control: float,
    sd_treatment: float,
    batch_control: int,
    batch_treatment: int,
    looks: int,
    replicates: int,
    alpha: float = 0.05,
    horizon: float = DEFAULT_HORIZON,
    lognormal: bool = False,
) -> dict[str, RejectionRate]:
    """Two means from sums and sums of squares: sequential vs naive vs fixed Welch test.

    ``lognormal`` draws skewed, latency-like values with the given means and standard
    deviations instead of normal ones, to check the asymptotics on heavy right tails.
    """

    def sums(mean: float, sd: float, batch: int) -> tuple[FloatArray, FloatArray]:
        if lognormal:
            sigma2 = math.log(1 + (sd / mean) ** 2)
            values = rng.lognormal(
                math.log(mean) - sigma2 / 2, math.sqrt(sigma2), (replicates, looks, batch)
            )
        else:
            values = rng.normal(mean, sd, (replicates, looks, batch))
        return np.cumsum(values.sum(axis=2), axis=1), np.cumsum((values**2).sum(axis=2), axis=1)

    s_c, ss_c = sums(mean_control, sd_control, batch_control)
    s_t, ss_t = sums(mean_treatment, sd_treatment, batch_treatment)
    n_c = batch_control * np.arange(1, looks + 1, dtype=np.float64)
    n_t = batch_treatment * np.arange(1, looks + 1, dtype=np.float64)
    mu_c, mu_t = s_c / n_c, s_t / n_t
    v_c = np.maximum((ss_c - s_c * mu_c) / (n_c - 1), 0.0)
    v_t = np.maximum((ss_t - s_t * mu_t) / (n_t - 1), 0.0)
    var_c, var_t = v_c / n_c, v_t / n_t
    se = np.sqrt(var_c + var_t)
    n_eff = (v_c + v_t) / np.maximum(var_c + var_t, 1e-300)
    diff = mu_t - mu_c
    sequential = _sequential_reject(diff, se, n_eff, alpha, horizon)
    share_t, share_c = var_t / (var_c + var_t), var_c / (var_c + var_t)
    df = 1.0 / (share_t**2 / (n_t - 1) + share_c**2 / (n_c - 1))
    t_stat = diff / se
    naive = 2 * sps.t.sf(np.abs(t_stat), df) <= alpha
    return {
        "sequential": _ever(sequential, "sequential confidence sequence"),
        "naive": _ever(naive, "naive Welch test at every look"),
        "fixed": _ever(naive[:, -1:], "fixed Welch test at the last look"),
    }


def simulate_srm(
    rng: np.random.Generator,
    *,
    weights_percent: tuple[int, int],
    true_share_treatment: float,
    batch: int,
    looks: int,
    replicates: int,
    alpha: float = 0.001,
    concentration: float = DEFAULT_CONCENTRATION,
) -> dict[str, RejectionRate]:
    """SRM on a two-arm split: Dirichlet-multinomial e-value vs chi-square at every look."""
    treatment = np.cumsum(rng.binomial(batch, true_share_treatment, (replicates, looks)), axis=1)
    total = batch * np.arange(1, looks + 1, dtype=np.float64)
    control = total - treatment
    theta_c, theta_t = weights_percent[0] / 100.0, weights_percent[1] / 100.0
    a_c, a_t = concentration * theta_c, concentration * theta_t
    log_e = (
        special.gammaln(concentration)
        - special.gammaln(concentration + total)
        + special.gammaln(a_c + control)
        - special.gammaln(a_c)
        + special.gammaln(a_t + treatment)
        - special.gammaln(a_t)
        - control * math.log(theta_c)
        - treatment * math.log(theta_t)
    )
    sequential = log_e >= math.log(1 / alpha)
    expected_t, expected_c = total * theta_t, total * theta_c
    chi2 = (treatment - expected_t) ** 2 / expected_t + (control - expected_c) ** 2 / expected_c
    naive = sps.chi2.sf(chi2, 1) <= alpha
    return {
        "sequential": _ever(sequential, "sequential Dirichlet-multinomial"),
        "naive": _ever(naive, "naive chi-square at every look"),
        "fixed": _ever(naive[:, -1:], "fixed chi-square at the last look"),
    }
