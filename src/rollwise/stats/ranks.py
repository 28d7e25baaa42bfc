"""Mann-Whitney U test with the Hodges-Lehmann shift and its interval.

A rank test compares whole distributions and is robust to the heavy tails of latency,
which is why canary judges such as Kayenta's use it. It works on raw samples and on
histogram counts (values in the same bucket are ties).

Formulas (Hollander, Wolfe & Chicken, *Nonparametric Statistical Methods*, 3rd ed.,
§4.1 and §4.3; Mann & Whitney 1947, *Ann. Math. Stat.* 18:50):

* ``U = #{(i, j): y_j > x_i} + ½ #{(i, j): y_j = x_i}`` for control ``x`` (size m) and
  treatment ``y`` (size n), so ``U / (mn)`` estimates ``P(Y > X) + ½ P(Y = X)``;
* large-sample test: ``z = (U - mn/2 ∓ ½) / σ_U`` with the tie-corrected
  ``σ_U² = mn/12 · ((N + 1) - Σ(t³ - t) / (N(N - 1)))``, ``N = m + n``, ``t`` the tie
  group sizes, and a continuity correction of ½ towards the mean;
* exact test (small samples without ties): the null distribution of ``U`` is the
  coefficient sequence of the Gaussian binomial ``[m+n choose m]_q``;
* Hodges-Lehmann shift: the median of the ``mn`` pairwise differences ``y_j - x_i``
  (Hodges & Lehmann 1963, *Ann. Math. Stat.* 34:598);
* Moses interval: ``[D_(k), D_(mn+1-k)]`` of the ordered pairwise differences, where
  ``k = ⌊mn/2 - z_{1-α/2} σ_U⌋`` (large sample) or the largest ``k`` with
  ``P(U ≤ k - 1) ≤ α/2`` (exact); infinite ends when ``k < 1``.

A test of a shift ``δ0`` (``H0: Y - δ0 ~ X``) ranks ``y - δ0`` against ``x``; on the log
scale this judges a *ratio* ``exp(δ0)``, which is how latency bounds such as "no more than
10 % slower" are tested.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rollwise.stats.estimates import z_p_value, z_quantile
from rollwise.stats.results import (
    Alternative,
    InferenceResult,
    Interval,
    check_alpha,
    check_alternative,
)

Method = Literal["auto", "asymptotic", "exact"]

EXACT_MAX_SMALLER = 8
"""``auto`` uses the exact distribution when the smaller sample has at most this many..."""
EXACT_MAX_PAIRS = 100_000
"""...values, there are no ties, and there are at most this many pairs (cost is O(m·mn))."""


@dataclass(frozen=True, slots=True)
class _Pairs:
    """The multiset of pairwise differences ``y_j - x_i`` as sorted values with weights."""

    diffs: NDArray[np.float64]
    cumulative: NDArray[np.int64]  # cumulative weight up to and including each value

    @property
    def total(self) -> int:
        return int(self.cumulative[-1])

    def kth(self, k: int) -> float:
        """The k-th smallest difference (1-based)."""
        idx = int(np.searchsorted(self.cumulative, k, side="left"))
        return float(self.diffs[idx])

    def weight_above(self, threshold: float) -> tuple[int, int]:
        """``(#pairs with diff > threshold, #pairs with diff == threshold)``."""
        below_or_eq = int(np.searchsorted(self.diffs, threshold, side="right"))
        below = int(np.searchsorted(self.diffs, threshold, side="left"))
        cum_le = int(self.cumulative[below_or_eq - 1]) if below_or_eq else 0
        cum_lt = int(self.cumulative[below - 1]) if below else 0
        return self.total - cum_le, cum_le - cum_lt


class _SortedPairs:
    """Pairwise differences of two large samples, never materialised.

    Counting the differences at most ``d`` takes one binary search per treatment value, so
    an order statistic is found by bisection on ``d`` in O((m + n) log m) per step
    (a simple form of the selection idea of Johnson & Mizoguchi 1978, *SIAM J. Comput.*
    7:147); the answer is then snapped to an actual pairwise difference.
    """

    def __init__(self, x: NDArray[np.float64], y: NDArray[np.float64]) -> None:
        self.x = np.sort(x)
        self.y = np.sort(y)
        self.total = self.x.size * self.y.size

    def _count_le(self, d: float) -> int:
        idx = np.searchsorted(self.x, self.y - d, side="left")
        return int(np.sum(self.x.size - idx))

    def _count_lt(self, d: float) -> int:
        idx = np.searchsorted(self.x, self.y - d, side="right")
        return int(np.sum(self.x.size - idx))

    def kth(self, k: int) -> float:
        lo = float(self.y[0] - self.x[-1])
        hi = float(self.y[-1] - self.x[0])
        if self._count_le(lo) >= k:
            return lo
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if mid in (lo, hi):
                break
            if self._count_le(mid) >= k:
                hi = mid
            else:
                lo = mid
        # The largest actual difference not above hi is the k-th smallest.
        idx = np.searchsorted(self.x, self.y - hi, side="left")
        ok = idx < self.x.size
        return float(np.max(self.y[ok] - self.x[idx[ok]]))

    def weight_above(self, threshold: float) -> tuple[int, int]:
        le, lt = self._count_le(threshold), self._count_lt(threshold)
        return self.total - le, le - lt


MATERIALISE_MAX_PAIRS = 2_000_000
"""Distinct-value pairs up to which pairwise differences are built as an array."""


def _as_sample(values: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f"{name} sample is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} sample has non-finite values")
    return arr


def _tie_term(pooled: NDArray[np.float64]) -> float:
    _, t = np.unique(pooled, return_counts=True)
    t = t.astype(np.float64)
    return float(np.sum(t**3 - t))


def _sigma_u(m: int, n: int, tie_term: float) -> float:
    total = m + n
    var = m * n / 12.0 * ((total + 1) - tie_term / (total * (total - 1)))
    return math.sqrt(max(var, 0.0))


def _asymptotic_p(
    u: float, m: int, n: int, sigma: float, alternative: Alternative, continuity: bool
) -> tuple[float, float]:
    """``(z, p)`` for U of the treatment; the tail follows scipy's construction."""
    mean = m * n / 2.0
    if alternative == "greater":
        tail_u, factor = u, 1.0
    elif alternative == "less":
        tail_u, factor = m * n - u, 1.0
    else:
        tail_u, factor = max(u, m * n - u), 2.0
    numerator = tail_u - mean - (0.5 if continuity else 0.0)
    if sigma > 0.0:
        z = numerator / sigma
    else:
        z = math.copysign(math.inf, numerator) if numerator else 0.0
    p = min(1.0, factor * z_p_value(z, "greater"))
    signed_z = (u - mean) / sigma if sigma > 0 else 0.0
    return signed_z, p


def u_null_distribution(m: int, n: int) -> list[int]:
    """Counts of the ``C(m+n, m)`` arrangements by value of U (index = U), no ties.

    The generating function is the Gaussian binomial ``∏_{i=1..m} (1 - q^{n+i}) / (1 - q^i)``;
    multiplying and dividing one factor at a time keeps every step an exact integer
    polynomial.
    """
    small, large = sorted((m, n))
    poly = [1]
    for i in range(1, small + 1):
        grown = [*poly, *([0] * (large + i))]
        for k, c in enumerate(poly):
            grown[k + large + i] -= c
        for k in range(i, len(grown)):
            grown[k] += grown[k - i]
        poly = grown[: i * large + 1]
    return poly


def _exact_p(u: float, m: int, n: int, alternative: Alternative) -> float:
    counts = u_null_distribution(m, n)
    total = sum(counts)

    def sf(value: float) -> float:  # P(U >= value)
        start = max(0, math.ceil(value - 1e-9))
        return sum(counts[start:]) / total

    if alternative == "greater":
        return sf(u)
    if alternative == "less":
        return sf(m * n - u)
    return min(1.0, 2.0 * sf(max(u, m * n - u)))


def _choose_exact(method: Method, m: int, n: int, has_ties: bool) -> bool:
    if method == "exact":
        return True
    if method == "asymptotic":
        return False
    if method != "auto":
        raise ValueError(f"method must be auto, asymptotic or exact, got {method!r}")
    return min(m, n) <= EXACT_MAX_SMALLER and not has_ties and m * n <= EXACT_MAX_PAIRS


def _moses_k(m: int, n: int, sigma: float, alpha_two_sided: float, exact: bool) -> int:
    if exact:
        counts = u_null_distribution(m, n)
        total = sum(counts)
        cumulative = 0
        k = 0
        # Largest k with P(U <= k - 1) <= alpha/2.
        for value, c in enumerate(counts):
            cumulative += c
            if cumulative / total > alpha_two_sided / 2.0:
                break
            k = value + 1
        return k
    return math.floor(m * n / 2.0 - z_quantile(1.0 - alpha_two_sided / 2.0) * sigma)


def _moses_interval(
    pairs: _Pairs | _SortedPairs,
    m: int,
    n: int,
    sigma: float,
    alpha: float,
    alternative: Alternative,
    exact: bool,
) -> Interval:
    two_sided_alpha = alpha if alternative == "two-sided" else 2.0 * alpha
    k = _moses_k(m, n, sigma, two_sided_alpha, exact)
    if k < 1:
        low, high = -math.inf, math.inf
    else:
        low, high = pairs.kth(k), pairs.kth(m * n + 1 - k)
    if alternative == "greater":
        high = math.inf
    elif alternative == "less":
        low = -math.inf
    return Interval(low, high, 1.0 - alpha)


def _median(pairs: _Pairs | _SortedPairs) -> float:
    total = pairs.total
    if total % 2:
        return pairs.kth((total + 1) // 2)
    return 0.5 * (pairs.kth(total // 2) + pairs.kth(total // 2 + 1))


def _pairs_from_weighted(
    x_values: NDArray[np.float64],
    x_counts: NDArray[np.int64],
    y_values: NDArray[np.float64],
    y_counts: NDArray[np.int64],
) -> _Pairs:
    diffs = np.subtract.outer(y_values, x_values).ravel()
    weights = np.multiply.outer(y_counts, x_counts).ravel()
    order = np.argsort(diffs, kind="stable")
    diffs, weights = diffs[order], weights[order]
    unique, start = np.unique(diffs, return_index=True)
    summed = np.add.reduceat(weights, start) if weights.size else weights
    return _Pairs(unique, np.cumsum(summed, dtype=np.int64))


def _pairs_from_samples(x: NDArray[np.float64], y: NDArray[np.float64]) -> _Pairs | _SortedPairs:
    xv, xc = np.unique(x, return_counts=True)
    yv, yc = np.unique(y, return_counts=True)
    if xv.size * yv.size > MATERIALISE_MAX_PAIRS:
        return _SortedPairs(x, y)
    return _pairs_from_weighted(xv, xc.astype(np.int64), yv, yc.astype(np.int64))


def hodges_lehmann(control: ArrayLike, treatment: ArrayLike) -> float:
    """Median of all pairwise differences ``treatment_j - control_i``."""
    x = _as_sample(control, "control")
    y = _as_sample(treatment, "treatment")
    return _median(_pairs_from_samples(x, y))


def mann_whitney(
    control: ArrayLike,
    treatment: ArrayLike,
    *,
    null_shift: float = 0.0,
    alternative: Alternative = "two-sided",
    alpha: float = 0.05,
    method: Method = "auto",
    use_continuity: bool = True,
) -> InferenceResult:
    """Mann-Whitney U test of ``treatment - null_shift`` against ``control`` on raw samples.

    ``statistic`` is U of the treatment (of the shifted treatment when ``null_shift`` is
    set); ``estimate`` is the Hodges-Lehmann shift and ``interval`` the Moses interval.
    With ``null_shift == 0`` the p-value matches ``scipy.stats.mannwhitneyu(treatment,
    control)`` for the same method; ``auto`` picks exact like scipy but only up to
    :data:`EXACT_MAX_PAIRS` pairs.
    """
    x = _as_sample(control, "control")
    y = _as_sample(treatment, "treatment")
    alternative = check_alternative(alternative)
    check_alpha(alpha)
    m, n = x.size, y.size
    shifted = y - null_shift
    pooled = np.concatenate([x, shifted])
    tie_term = _tie_term(pooled)
    sigma = _sigma_u(m, n, tie_term)
    exact = _choose_exact(method, m, n, tie_term > 0.0)
    pairs = _pairs_from_samples(x, y)
    above, equal = pairs.weight_above(null_shift) if null_shift else (0, 0)
    if null_shift:
        u = above + 0.5 * equal
    else:
        ranks = _midranks(pooled)
        u = float(np.sum(ranks[m:]) - n * (n + 1) / 2.0)
    if exact:
        p = _exact_p(u, m, n, alternative)
        z = (u - m * n / 2.0) / sigma if sigma > 0 else 0.0
    else:
        z, p = _asymptotic_p(u, m, n, sigma, alternative, use_continuity)
    return InferenceResult(
        method="Mann-Whitney U (exact)" if exact else "Mann-Whitney U (asymptotic)",
        estimate=_median(pairs),
        interval=_moses_interval(pairs, m, n, sigma, alpha, alternative, exact),
        p_value=p,
        statistic=u,
        alpha=alpha,
        alternative=alternative,
        null_value=null_shift,
        n_control=m,
        n_treatment=n,
        extra={"z": z, "superiority": u / (m * n)},
    )


def _midranks(values: NDArray[np.float64]) -> NDArray[np.float64]:
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(values.size, dtype=np.float64)
    _, start, counts = np.unique(sorted_vals, return_index=True, return_counts=True)
    mid = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(mid, counts)
    return ranks


def mann_whitney_counts(
    values: Sequence[float] | NDArray[np.float64],
    control_counts: Sequence[int] | NDArray[np.int64],
    treatment_counts: Sequence[int] | NDArray[np.int64],
    *,
    null_shift: float = 0.0,
    alternative: Alternative = "two-sided",
    alpha: float = 0.05,
    use_continuity: bool = True,
) -> InferenceResult:
    """Mann-Whitney U and Hodges-Lehmann on histogram counts.

    ``values[i]`` represents every observation in bucket ``i`` (e.g. the bucket midpoints
    of a :class:`~rollwise.metrics.histogram.LogHistogram`, or their logarithms to judge
    ratios); values must be strictly increasing. Observations in one bucket are ties, so
    the test is always the tie-corrected large-sample one. The result equals
    :func:`mann_whitney` on the samples the counts stand for.
    """
    v = np.asarray(values, dtype=np.float64)
    cx = np.asarray(control_counts, dtype=np.int64)
    cy = np.asarray(treatment_counts, dtype=np.int64)
    if not (v.shape == cx.shape == cy.shape) or v.ndim != 1:
        raise ValueError("values and both count arrays must be 1-D of one length")
    if np.any(np.diff(v) <= 0) or not np.all(np.isfinite(v)):
        raise ValueError("values must be finite and strictly increasing")
    if np.any(cx < 0) or np.any(cy < 0):
        raise ValueError("counts must be >= 0")
    m, n = int(cx.sum()), int(cy.sum())
    if m == 0 or n == 0:
        raise ValueError("each arm needs at least one observation")
    alternative = check_alternative(alternative)
    check_alpha(alpha)
    keep_x, keep_y = cx > 0, cy > 0
    pairs = _pairs_from_weighted(v[keep_x], cx[keep_x], v[keep_y], cy[keep_y])
    if null_shift:
        above, equal = pairs.weight_above(null_shift)
        u = above + 0.5 * equal
        pooled_v = np.concatenate([v[keep_x], v[keep_y] - null_shift])
        pooled_c = np.concatenate([cx[keep_x], cy[keep_y]])
        _, inverse = np.unique(pooled_v, return_inverse=True)
        t = np.bincount(inverse, weights=pooled_c).astype(np.float64)
    else:
        below = np.concatenate([[0], np.cumsum(cx)[:-1]])
        u = float(np.sum(cy * (below + 0.5 * cx)))
        t = (cx + cy).astype(np.float64)
    tie_term = float(np.sum(t**3 - t))
    sigma = _sigma_u(m, n, tie_term)
    z, p = _asymptotic_p(u, m, n, sigma, alternative, use_continuity)
    return InferenceResult(
        method="Mann-Whitney U on histograms (asymptotic)",
        estimate=_median(pairs),
        interval=_moses_interval(pairs, m, n, sigma, alpha, alternative, exact=False),
        p_value=p,
        statistic=u,
        alpha=alpha,
        alternative=alternative,
        null_value=null_shift,
        n_control=m,
        n_treatment=n,
        extra={"z": z, "superiority": u / (m * n)},
    )
