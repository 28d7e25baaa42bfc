"""Quantiles (latency p50/p95/p99) as estimates with standard errors, from histograms.

A quantile's standard error depends on the density at the quantile, which a histogram
estimates poorly. Woodruff's method avoids it: the empirical CDF at the quantile has the
binomial standard error ``s = √(p(1-p)/n)``, so the interval
``[Q̂(p - z·s), Q̂(p + z·s)]`` covers the quantile, and ``se(Q̂(p)) ≈ (Q̂(p + z·s) -
Q̂(p - z·s)) / (2z)`` (Woodruff 1952, "Confidence intervals for medians and other position
measures", *JASA* 47:635; Francisco & Fuller 1991, *Ann. Stat.* 19:454 for its validity).
The probabilities are clipped to ``[0, 1]``, which makes tail intervals conservative when
there are few observations beyond the quantile; gates therefore require at least
:data:`MIN_TAIL_COUNT` observations beyond a quantile before judging it.

Two arms combine with :func:`~rollwise.stats.estimates.difference` (milliseconds) or
:func:`~rollwise.stats.estimates.log_ratio` ("p99 no more than 10 % above stable").
"""

from __future__ import annotations

import math
from typing import Protocol

from rollwise.stats.estimates import Estimate, z_quantile

WOODRUFF_ALPHA = 0.05
"""Level of the Woodruff interval whose width defines the standard error."""
MIN_TAIL_COUNT = 10
"""Fewest observations beyond a quantile (``n·min(p, 1-p)``) for its normal approximation."""


class QuantileSource(Protocol):
    """Anything with a count and an interpolated quantile function (a LogHistogram)."""

    @property
    def count(self) -> int: ...

    def quantile(self, q: float) -> float: ...


def tail_count(source: QuantileSource, q: float) -> float:
    """Expected number of observations on the thin side of the ``q``-quantile."""
    return source.count * min(q, 1.0 - q)


def quantile_estimate(source: QuantileSource, q: float) -> Estimate:
    """The ``q``-quantile with its Woodruff standard error; ``n_eff`` is the count."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {q}")
    n = source.count
    if n < 2:
        raise ValueError(f"a quantile's standard error needs at least two values, got {n}")
    z = z_quantile(1.0 - WOODRUFF_ALPHA / 2.0)
    s = math.sqrt(q * (1.0 - q) / n)
    low = source.quantile(max(0.0, q - z * s))
    high = source.quantile(min(1.0, q + z * s))
    return Estimate(source.quantile(q), max(0.0, high - low) / (2.0 * z), float(n))
