"""A mergeable latency histogram with fixed, log-spaced buckets.

The gateway records latencies into one :class:`LogHistogram` per version and time
window; because all of them share one bucket scheme, histograms from replicas and time
buckets merge by adding counts, and the controller can compare the stable and the candidate
version bucket by bucket (quantiles, rank tests, drift).

Bucket scheme (values in milliseconds, but nothing here depends on the unit):

* ``BUCKETS_PER_DECADE = 30`` regular buckets per factor of ten, so each bucket's
  upper edge is ``GROWTH = 10 ** (1 / 30) ≈ 1.0798`` times its lower edge;
* regular buckets cover ``[LOWEST, HIGHEST) = [0.01, 100_000)`` ms (10 µs to 100 s),
  ``DECADES * BUCKETS_PER_DECADE = 210`` of them, indices ``1 .. 210``;
* index ``0`` is the underflow bucket ``[0, LOWEST)`` (negative values land there too)
  and index ``211`` the overflow bucket ``[HIGHEST, inf)``.

A value reported from its bucket is off by at most one bucket width, a relative error
below 8 % (below 4 % from the geometric midpoint). Regular bucket ``i`` is
``[LOWEST * GROWTH**(i-1), LOWEST * GROWTH**i)``; its geometric midpoint is
``LOWEST * GROWTH**(i - 0.5)``. The midpoints of the underflow and overflow buckets are
defined on the same grid (``LOWEST / sqrt(GROWTH)`` and ``HIGHEST * sqrt(GROWTH)``), so
that the log-midpoints of all buckets are equally spaced, which the rank tests on
log-latency rely on.

Quantiles interpolate geometrically inside the bucket that holds the requested rank
(linearly in the underflow bucket; the overflow bucket reports ``HIGHEST``). The mean
is computed from the midpoints; where the exact sum is known (``ArmSummary`` keeps it)
prefer ``sum / count``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping

BUCKETS_PER_DECADE = 30
DECADES = 7
LOWEST = 0.01
HIGHEST = LOWEST * math.pow(10.0, DECADES)
GROWTH = math.pow(10.0, 1 / BUCKETS_PER_DECADE)
REGULAR_BUCKETS = DECADES * BUCKETS_PER_DECADE
NUM_BUCKETS = REGULAR_BUCKETS + 2
"""Total number of buckets including the underflow (0) and overflow (last) buckets."""
UNDERFLOW = 0
OVERFLOW = NUM_BUCKETS - 1

_LOG_LOWEST = math.log(LOWEST)
_INV_LOG_GROWTH = 1.0 / math.log(GROWTH)
# _EDGES[i] is the lower edge of bucket i for i >= 1 and _EDGES[i + 1] its upper edge;
# computed as powers of ten rather than repeated products so that decade edges are exact.
_EDGES: tuple[float, ...] = (
    0.0,
    *(LOWEST * math.pow(10.0, k / BUCKETS_PER_DECADE) for k in range(REGULAR_BUCKETS + 1)),
)
_MIDPOINTS: tuple[float, ...] = tuple(
    LOWEST * math.pow(10.0, (i - 0.5) / BUCKETS_PER_DECADE) for i in range(NUM_BUCKETS)
)


def bucket_index(value: float) -> int:
    """Index of the bucket that holds ``value`` (``0`` below ``LOWEST``, last at or above
    ``HIGHEST``); NaN counts as underflow so that one bad measurement cannot raise."""
    if not value >= LOWEST:
        return UNDERFLOW
    if value >= HIGHEST:
        return OVERFLOW
    i = int((math.log(value) - _LOG_LOWEST) * _INV_LOG_GROWTH) + 1
    # The logarithm can land one bucket off right at an edge; the edges decide.
    if value < _EDGES[i]:
        return i - 1
    if value >= _EDGES[i + 1]:
        return i + 1
    return i


def bucket_bounds(index: int) -> tuple[float, float]:
    """``(lower, upper)`` edges of a bucket; the overflow bucket's upper edge is inf."""
    _check_index(index)
    if index == OVERFLOW:
        return HIGHEST, math.inf
    return _EDGES[index], _EDGES[index + 1]


def midpoints() -> tuple[float, ...]:
    """Geometric midpoint of every bucket, index-aligned with :meth:`LogHistogram.counts`."""
    return _MIDPOINTS


def log_midpoints() -> tuple[float, ...]:
    """Natural log of :func:`midpoints`: equally spaced by ``log(GROWTH)``."""
    return tuple(math.log(m) for m in _MIDPOINTS)


def _check_index(index: int) -> None:
    if not 0 <= index < NUM_BUCKETS:
        raise ValueError(f"bucket index {index} is outside 0..{NUM_BUCKETS - 1}")


class LogHistogram:
    """Counts of values in the fixed log-spaced buckets described in the module docstring.

    ``record`` is the hot path of the gateway: one logarithm, one int, one list update.
    The class is not thread-safe: one thread (the gateway's event loop) records into it.
    """

    __slots__ = ("_counts", "_total")

    def __init__(self) -> None:
        self._counts: list[int] = [0] * NUM_BUCKETS
        self._total = 0

    # -- recording -------------------------------------------------------------------

    def record(self, value: float) -> None:
        """Count one value."""
        self._counts[bucket_index(value)] += 1
        self._total += 1

    def record_many(self, value: float, count: int) -> None:
        """Count ``count`` occurrences of ``value`` (``count >= 0``)."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        self._counts[bucket_index(value)] += count
        self._total += count

    def update(self, other: LogHistogram) -> None:
        """Add ``other``'s counts into this histogram, in place."""
        mine = self._counts
        for i, c in enumerate(other._counts):
            if c:
                mine[i] += c
        self._total += other._total

    def merge(self, other: LogHistogram) -> LogHistogram:
        """A new histogram holding the counts of both; neither operand changes."""
        out = self.copy()
        out.update(other)
        return out

    def __add__(self, other: LogHistogram) -> LogHistogram:
        return self.merge(other)

    @classmethod
    def merged(cls, histograms: Iterable[LogHistogram]) -> LogHistogram:
        """The sum of any number of histograms (an empty one for none)."""
        out = cls()
        for h in histograms:
            out.update(h)
        return out

    def copy(self) -> LogHistogram:
        out = LogHistogram()
        out._counts = list(self._counts)
        out._total = self._total
        return out

    # -- reading ---------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Number of values recorded."""
        return self._total

    def __len__(self) -> int:
        return self._total

    def counts(self) -> tuple[int, ...]:
        """Dense counts of all ``NUM_BUCKETS`` buckets, index-aligned with :func:`midpoints`."""
        return tuple(self._counts)

    def nonzero(self) -> Iterator[tuple[int, int]]:
        """``(index, count)`` of every non-empty bucket in increasing index order."""
        for i, c in enumerate(self._counts):
            if c:
                yield i, c

    def bucket_midpoints(self) -> tuple[float, ...]:
        """Geometric midpoint of every bucket (the same for every histogram)."""
        return _MIDPOINTS

    def mean(self) -> float:
        """Mean of the bucket midpoints weighted by count; NaN when empty."""
        if self._total == 0:
            return math.nan
        return sum(c * _MIDPOINTS[i] for i, c in self.nonzero()) / self._total

    def variance(self) -> float:
        """Sample variance (ddof=1) of the bucket midpoints; NaN below two values."""
        n = self._total
        if n < 2:
            return math.nan
        m = self.mean()
        ss = sum(c * (_MIDPOINTS[i] - m) ** 2 for i, c in self.nonzero())
        return ss / (n - 1)

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (``0 <= q <= 1``); NaN when empty.

        The target rank ``q * count`` is located in the cumulative counts and the value is
        interpolated inside that bucket: geometrically in regular buckets (values are
        assumed log-uniform within a bucket), linearly in ``[0, LOWEST)``; the overflow
        bucket reports ``HIGHEST``, the largest value the scheme can vouch for.
        The result is non-decreasing in ``q``.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {q}")
        if self._total == 0:
            return math.nan
        return self.quantile_at_rank(q * self._total)

    def quantile_at_rank(self, rank: float) -> float:
        """The value below which ``rank`` of the recorded values lie (interpolated)."""
        n = self._total
        if n == 0:
            return math.nan
        rank = min(max(rank, 0.0), float(n))
        cumulative = 0
        last = 0
        for i, c in enumerate(self._counts):
            if not c:
                continue
            last = i
            if cumulative + c >= rank:
                return _interpolate(i, (rank - cumulative) / c)
            cumulative += c
        return _interpolate(last, 1.0)

    def cdf(self, value: float) -> float:
        """Share of recorded values below ``value``, interpolated like :meth:`quantile`."""
        n = self._total
        if n == 0:
            return math.nan
        i = bucket_index(value)
        below = sum(self._counts[:i])
        c = self._counts[i]
        if c == 0:
            return below / n
        lo, hi = bucket_bounds(i)
        if i == OVERFLOW:
            within = 0.0
        elif i == UNDERFLOW:
            within = max(value, 0.0) / LOWEST
        else:
            within = math.log(value / lo) / math.log(hi / lo)
        return (below + c * min(max(within, 0.0), 1.0)) / n

    # -- (de)serialisation -----------------------------------------------------------

    def to_dict(self) -> dict[int, int]:
        """Sparse ``{bucket index: count}`` of the non-empty buckets."""
        return dict(self.nonzero())

    @classmethod
    def from_dict(cls, data: Mapping[int, int] | Mapping[str, int]) -> LogHistogram:
        """Inverse of :meth:`to_dict`; keys may be strings (as after a JSON round trip)."""
        out = cls()
        for key, value in data.items():
            index = int(key)
            _check_index(index)
            count = int(value)
            if count < 0:
                raise ValueError(f"bucket {index} has a negative count {count}")
            out._counts[index] += count
            out._total += count
        return out

    @classmethod
    def from_counts(cls, counts: Iterable[int]) -> LogHistogram:
        """A histogram from dense counts (``NUM_BUCKETS`` of them, as :meth:`counts` gives)."""
        dense = [int(c) for c in counts]
        if len(dense) != NUM_BUCKETS:
            raise ValueError(f"expected {NUM_BUCKETS} counts, got {len(dense)}")
        return cls.from_dict(dict(enumerate(dense)))

    @classmethod
    def of(cls, values: Iterable[float]) -> LogHistogram:
        """A histogram of the given values."""
        out = cls()
        for v in values:
            out.record(v)
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LogHistogram):
            return NotImplemented
        return self._counts == other._counts

    __hash__ = None  # type: ignore[assignment]  # mutable, so unhashable

    def __repr__(self) -> str:
        return f"LogHistogram(count={self._total}, buckets={self.to_dict()})"


def _interpolate(index: int, fraction: float) -> float:
    fraction = min(max(fraction, 0.0), 1.0)
    if index == OVERFLOW:
        return HIGHEST
    lo, hi = _EDGES[index], _EDGES[index + 1]
    if index == UNDERFLOW:
        return lo + (hi - lo) * fraction
    return lo * math.pow(hi / lo, fraction)
