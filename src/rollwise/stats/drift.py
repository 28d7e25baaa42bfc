"""Drift between the output distributions of two versions: PSI and Kolmogorov-Smirnov.

Outputs are summarised as counts per bin: class labels for classifiers, or the buckets
of a :class:`~rollwise.metrics.histogram.LogHistogram` for numeric outputs. Control is the
stable version (the "expected" distribution), treatment the candidate ("actual").

Population stability index (Siddiqi, *Credit Risk Scorecards*, 2006, ch. 8; Yurdakul &
Naranjo 2020, "Statistical properties of the population stability index", *J. Risk
Model Validation* 14:89):

    ``PSI = Σ_i (q_i - p_i) · ln(q_i / p_i)``

with bin shares ``p`` (control) and ``q`` (treatment). Bins empty in both arms are
dropped; the others get ``SMOOTHING`` (½) added to both counts so that a bin empty in
one arm gives a finite term. The standard error is by the delta method on the two
multinomials: with ``g_i = ∂PSI/∂q_i = ln(q_i/p_i) + 1 - p_i/q_i`` and
``h_i = ∂PSI/∂p_i = ln(p_i/q_i) + 1 - q_i/p_i``,
``se² = (Σ q g² - (Σ q g)²)/n_t + (Σ p h² - (Σ p h)²)/n_c``. It is accurate when PSI is
clearly above zero (where a bound such as 0.1 or 0.25 sits); at PSI = 0 the statistic is
χ²-like and upward biased by about ``(B - 1)(1/n_t + 1/n_c)``, which errs towards
"drift", never towards a false pass. Because the delta-method error vanishes at PSI = 0
(where every gradient is zero), the reported standard error is never below the null
standard deviation ``(1/n_t + 1/n_c)·√(2(B - 1))`` of that χ² approximation, so that
identical-looking samples cannot pass a bound on no evidence.

Kolmogorov-Smirnov on ordered bins: ``D = max_x |F_t(x) - F_c(x)|`` over bin edges, the
asymptotic p-value of Smirnov's statistic as ``scipy.stats.ks_2samp(method="asymp")``
computes it, and a distribution-free interval for the population distance from the
DKW inequality applied to each arm (fixed-sample, or time-uniform for repeated looks;
see :mod:`rollwise.stats.sequential`). Each arm's band holds with probability
``1 - α/2``, so ``|D̂ - D| ≤ ε_c + ε_t`` with probability at least ``1 - α``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats as sps

from rollwise.stats.estimates import Estimate
from rollwise.stats.results import Interval, check_alpha
from rollwise.stats.sequential import dkw_radius, dkw_radius_uniform

SMOOTHING = 0.5
"""Count added to every non-empty bin of both arms before computing PSI."""

Counts = Sequence[int] | NDArray[np.int64]


def align(
    control: Mapping[str, int], treatment: Mapping[str, int]
) -> tuple[list[str], list[int], list[int]]:
    """Categorical counts as aligned lists over the union of keys (sorted)."""
    keys = sorted(set(control) | set(treatment))
    return keys, [int(control.get(k, 0)) for k in keys], [int(treatment.get(k, 0)) for k in keys]


def _arrays(control: Counts, treatment: Counts) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    c = np.asarray(control, dtype=np.float64)
    t = np.asarray(treatment, dtype=np.float64)
    if c.shape != t.shape or c.ndim != 1:
        raise ValueError("both count arrays must be 1-D of one length")
    if np.any(c < 0) or np.any(t < 0):
        raise ValueError("counts must be >= 0")
    if c.sum() == 0 or t.sum() == 0:
        raise ValueError("each arm needs at least one observation")
    return c, t


def psi(control: Counts, treatment: Counts) -> Estimate:
    """PSI of treatment against control with its delta-method standard error."""
    c, t = _arrays(control, treatment)
    n_c, n_t = float(c.sum()), float(t.sum())
    keep = (c + t) > 0
    c, t = c[keep] + SMOOTHING, t[keep] + SMOOTHING
    p, q = c / c.sum(), t / t.sum()
    log_ratio = np.log(q / p)
    value = float(np.sum((q - p) * log_ratio))
    g = log_ratio + 1.0 - p / q
    h = -log_ratio + 1.0 - q / p
    var_t = float(np.sum(q * g * g) - np.sum(q * g) ** 2) / n_t
    var_c = float(np.sum(p * h * h) - np.sum(p * h) ** 2) / n_c
    var = max(var_t, 0.0) + max(var_c, 0.0)
    null_sd = (1.0 / n_c + 1.0 / n_t) * math.sqrt(2.0 * max(p.size - 1, 1))
    n_eff = 2.0 / (1.0 / n_c + 1.0 / n_t)
    return Estimate(value, max(math.sqrt(var), null_sd), n_eff)


@dataclass(frozen=True, slots=True)
class KsResult:
    """Two-sample KS distance on binned data with a DKW interval for the true distance."""

    statistic: float
    p_value: float
    interval: Interval
    n_control: int
    n_treatment: int
    sequential: bool


def ks_counts(
    control: Counts,
    treatment: Counts,
    *,
    alpha: float = 0.05,
    sequential: bool = True,
) -> KsResult:
    """KS distance between two binned distributions over the same ordered bins."""
    check_alpha(alpha)
    c, t = _arrays(control, treatment)
    n_c, n_t = int(c.sum()), int(t.sum())
    distance = float(np.max(np.abs(np.cumsum(c) / n_c - np.cumsum(t) / n_t)))
    big, small = max(n_c, n_t), min(n_c, n_t)
    en = big * small / (big + small)
    p = float(np.clip(sps.kstwo.sf(distance, np.round(en)), 0.0, 1.0))
    radius_fn = dkw_radius_uniform if sequential else dkw_radius
    eps = radius_fn(n_c, alpha / 2.0) + radius_fn(n_t, alpha / 2.0)
    interval = Interval(max(0.0, distance - eps), min(1.0, distance + eps), 1.0 - alpha)
    return KsResult(distance, p, interval, n_c, n_t, sequential)
