"""LogHistogram: bucket scheme, recording, merging, quantiles and serialisation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollwise.metrics import histogram as h
from rollwise.metrics.histogram import LogHistogram

latencies = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
value_lists = st.lists(latencies, max_size=60)


def test_scheme_spans_ten_microseconds_to_a_hundred_seconds() -> None:
    assert h.LOWEST == 0.01
    assert math.isclose(h.HIGHEST, 100_000.0)
    assert math.isclose(h.GROWTH, 1.0798, abs_tol=1e-4)
    assert h.NUM_BUCKETS == 212
    lo, hi = h.bucket_bounds(1)
    assert lo == 0.01
    assert math.isclose(hi, 0.01 * h.GROWTH)
    lo, hi = h.bucket_bounds(h.OVERFLOW)
    assert math.isclose(lo, 100_000.0)
    assert hi == math.inf


@pytest.mark.parametrize(
    ("value", "index"),
    [
        pytest.param(0.0, 0, id="zero is underflow"),
        pytest.param(-3.0, 0, id="negative is underflow"),
        pytest.param(math.nan, 0, id="nan is underflow"),
        pytest.param(0.0099999, 0, id="just below the lowest edge"),
        pytest.param(0.01, 1, id="the lowest edge opens bucket 1"),
        pytest.param(0.1, 31, id="a decade edge opens its bucket"),
        pytest.param(1.0, 61, id="one millisecond"),
        pytest.param(99_999.0, 210, id="just below the highest edge"),
        pytest.param(100_000.0, 211, id="the highest edge is overflow"),
        pytest.param(math.inf, 211, id="infinity is overflow"),
    ],
)
def test_bucket_index_table(value: float, index: int) -> None:
    assert h.bucket_index(value) == index


@given(st.floats(min_value=1e-3, max_value=1e6, allow_nan=False))
def test_value_lies_inside_its_bucket(value: float) -> None:
    lo, hi = h.bucket_bounds(h.bucket_index(value))
    assert lo <= value < hi


def test_every_edge_opens_its_own_bucket() -> None:
    for i in range(1, h.OVERFLOW):
        lo, _ = h.bucket_bounds(i)
        assert h.bucket_index(lo) == i


def test_midpoints_are_geometric_and_equally_spaced_in_log() -> None:
    mids = h.midpoints()
    assert len(mids) == h.NUM_BUCKETS
    for i in range(1, h.OVERFLOW):
        lo, hi = h.bucket_bounds(i)
        assert mids[i] == pytest.approx(math.sqrt(lo * hi))
    steps = np.diff(h.log_midpoints())
    np.testing.assert_allclose(steps, math.log(h.GROWTH), rtol=1e-9)


def test_empty_histogram_reports_nan() -> None:
    empty = LogHistogram()
    assert empty.count == 0
    assert math.isnan(empty.quantile(0.5))
    assert math.isnan(empty.mean())
    assert math.isnan(empty.cdf(1.0))
    assert empty.to_dict() == {}


def test_quantiles_of_a_known_sample_are_within_one_bucket() -> None:
    rng = np.random.default_rng(7)
    values = rng.lognormal(mean=3.0, sigma=0.8, size=20_000)
    hist = LogHistogram.of(values.tolist())
    for q in (0.5, 0.9, 0.95, 0.99):
        exact = float(np.quantile(values, q))
        assert hist.quantile(q) == pytest.approx(exact, rel=h.GROWTH - 1)
    assert hist.mean() == pytest.approx(values.mean(), rel=0.01)
    assert hist.variance() == pytest.approx(values.var(ddof=1), rel=0.03)


def test_single_value_quantiles_stay_in_its_bucket() -> None:
    hist = LogHistogram.of([12.5])
    lo, hi = h.bucket_bounds(h.bucket_index(12.5))
    for q in (0.0, 0.5, 1.0):
        assert lo <= hist.quantile(q) <= hi
    assert math.isnan(hist.variance())


def test_overflow_reports_the_highest_edge() -> None:
    hist = LogHistogram.of([5e5, 7e5])
    assert hist.quantile(0.99) == pytest.approx(h.HIGHEST)


def test_quantile_rejects_out_of_range_q() -> None:
    with pytest.raises(ValueError, match="quantile"):
        LogHistogram.of([1.0]).quantile(1.5)


@given(value_lists, st.floats(0, 1), st.floats(0, 1))
def test_quantile_is_monotone(values: list[float], q1: float, q2: float) -> None:
    hist = LogHistogram.of(values)
    if not values:
        return
    lo, hi = sorted((q1, q2))
    assert hist.quantile(lo) <= hist.quantile(hi)


@given(value_lists, value_lists, value_lists)
def test_merge_is_associative_and_commutative(
    a: list[float], b: list[float], c: list[float]
) -> None:
    ha, hb, hc = LogHistogram.of(a), LogHistogram.of(b), LogHistogram.of(c)
    assert (ha + hb) + hc == ha + (hb + hc)
    assert ha + hb == hb + ha
    assert (ha + hb + hc).count == len(a) + len(b) + len(c)
    assert LogHistogram.merged([ha, hb, hc]) == LogHistogram.of(a + b + c)


def test_merge_leaves_operands_unchanged_and_update_adds_in_place() -> None:
    a, b = LogHistogram.of([1.0, 2.0]), LogHistogram.of([3.0])
    merged = a.merge(b)
    assert (a.count, b.count, merged.count) == (2, 1, 3)
    a.update(b)
    assert a == merged


@settings(max_examples=50)
@given(value_lists)
def test_dict_round_trip_through_json(values: list[float]) -> None:
    hist = LogHistogram.of(values)
    sparse = hist.to_dict()
    assert all(c > 0 for c in sparse.values())
    again = LogHistogram.from_dict(json.loads(json.dumps(sparse)))
    assert again == hist
    assert again.count == hist.count
    assert LogHistogram.from_counts(hist.counts()) == hist


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"-1": 3}, id="negative index"),
        pytest.param({str(h.NUM_BUCKETS): 1}, id="index past the overflow bucket"),
        pytest.param({"5": -2}, id="negative count"),
    ],
)
def test_from_dict_refuses_bad_data(data: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        LogHistogram.from_dict(data)


def test_record_many_counts_like_repeated_record() -> None:
    one = LogHistogram()
    for _ in range(5):
        one.record(3.3)
    many = LogHistogram()
    many.record_many(3.3, 5)
    assert one == many
    with pytest.raises(ValueError):
        many.record_many(1.0, -1)


@given(value_lists, latencies)
def test_cdf_agrees_with_counts_at_bucket_edges(values: list[float], probe: float) -> None:
    hist = LogHistogram.of(values)
    if not values:
        return
    index = h.bucket_index(probe)
    lo, _ = h.bucket_bounds(index)
    below = sum(1 for v in values if h.bucket_index(v) < index)
    if index > 0:
        assert hist.cdf(lo) == pytest.approx(below / len(values))
    assert 0.0 <= hist.cdf(probe) <= 1.0


def test_cdf_inverts_quantile_inside_a_bucket() -> None:
    hist = LogHistogram.of([float(v) for v in range(1, 500)])
    for q in (0.1, 0.5, 0.9):
        assert hist.cdf(hist.quantile(q)) == pytest.approx(q, abs=1e-9)


def test_histograms_are_unhashable_values() -> None:
    assert LogHistogram.of([1.0]) == LogHistogram.of([1.0])
    assert LogHistogram.of([1.0]) != LogHistogram.of([2.0])
    with pytest.raises(TypeError):
        hash(LogHistogram())
