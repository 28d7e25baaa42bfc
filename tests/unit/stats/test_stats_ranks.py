"""Mann-Whitney U and Hodges-Lehmann against scipy and brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from rollwise.metrics.histogram import LogHistogram, log_midpoints
from rollwise.stats import ranks
from rollwise.stats.ranks import (
    hodges_lehmann,
    mann_whitney,
    mann_whitney_counts,
    u_null_distribution,
)
from rollwise.stats.results import Alternative

ALTERNATIVES: list[Alternative] = ["two-sided", "greater", "less"]


def _pair(
    seed: int, m: int, n: int, shift: float, rounding: int | None
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.lognormal(3.0, 0.5, m)
    y = rng.lognormal(3.0, 0.5, n) + shift
    if rounding is not None:
        x, y = np.round(x, rounding), np.round(y, rounding)
    return x, y


SAMPLES = [
    pytest.param(1, 40, 60, 2.0, None, id="unequal sizes, no ties"),
    pytest.param(2, 200, 150, 0.0, 0, id="many ties"),
    pytest.param(3, 3, 5, 5.0, None, id="tiny samples"),
    pytest.param(4, 120, 120, -3.0, 1, id="equal sizes, treatment faster"),
]


def _brute_moses(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[float, float]:
    diffs = np.sort(np.subtract.outer(y, x).ravel())
    m, n = x.size, y.size
    pooled = np.concatenate([x, y])
    sigma = math.sqrt(m * n * (m + n + 1) / 12.0 * sps.tiecorrect(sps.rankdata(pooled)))
    k = math.floor(m * n / 2 - sps.norm.ppf(1 - alpha / 2) * sigma)
    if k < 1:
        return -math.inf, math.inf
    return float(diffs[k - 1]), float(diffs[m * n - k])


@pytest.mark.parametrize(("seed", "m", "n", "shift", "rounding"), SAMPLES)
@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_asymptotic_matches_scipy(
    seed: int, m: int, n: int, shift: float, rounding: int | None, alternative: Alternative
) -> None:
    x, y = _pair(seed, m, n, shift, rounding)
    ours = mann_whitney(x, y, alternative=alternative, method="asymptotic")
    ref = sps.mannwhitneyu(y, x, alternative=alternative, method="asymptotic")
    assert ours.statistic == pytest.approx(float(ref.statistic), abs=1e-9)
    assert ours.p_value == pytest.approx(float(ref.pvalue), abs=1e-6)


@pytest.mark.parametrize(
    ("m", "n", "shift"),
    [
        pytest.param(3, 5, 5.0, id="three against five"),
        pytest.param(6, 6, 0.0, id="six each, no effect"),
        pytest.param(2, 8, -8.0, id="two against eight"),
    ],
)
@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_exact_matches_scipy(m: int, n: int, shift: float, alternative: Alternative) -> None:
    x, y = _pair(9, m, n, shift, None)
    ours = mann_whitney(x, y, alternative=alternative)
    assert "exact" in ours.method
    ref = sps.mannwhitneyu(y, x, alternative=alternative, method="exact")
    assert ours.p_value == pytest.approx(float(ref.pvalue), abs=1e-9)


@pytest.mark.parametrize(("m", "n"), [(1, 1), (2, 3), (3, 4), (4, 4)])
def test_null_distribution_matches_enumeration(m: int, n: int) -> None:
    counts = [0] * (m * n + 1)
    for chosen in itertools.combinations(range(m + n), n):
        # treatment takes the ranks in `chosen`; U counts control values below each one.
        u = sum(r - i for i, r in enumerate(sorted(chosen)))
        counts[u] += 1
    assert u_null_distribution(m, n) == counts


@pytest.mark.parametrize(("seed", "m", "n", "shift", "rounding"), SAMPLES)
def test_hodges_lehmann_is_the_median_of_pairwise_differences(
    seed: int, m: int, n: int, shift: float, rounding: int | None
) -> None:
    x, y = _pair(seed, m, n, shift, rounding)
    brute = float(np.median(np.subtract.outer(y, x)))
    assert hodges_lehmann(x, y) == pytest.approx(brute, abs=1e-9)
    assert mann_whitney(x, y).estimate == pytest.approx(brute, abs=1e-9)


@pytest.mark.parametrize(("seed", "m", "n", "shift", "rounding"), SAMPLES[:2] + SAMPLES[3:])
def test_moses_interval_matches_brute_force(
    seed: int, m: int, n: int, shift: float, rounding: int | None
) -> None:
    x, y = _pair(seed, m, n, shift, rounding)
    ours = mann_whitney(x, y, alpha=0.05, method="asymptotic")
    low, high = _brute_moses(x, y, 0.05)
    assert ours.interval.low == pytest.approx(low, abs=1e-9)
    assert ours.interval.high == pytest.approx(high, abs=1e-9)


def test_tiny_samples_give_an_unbounded_interval_rather_than_overclaim() -> None:
    result = mann_whitney([1.0, 2.0], [3.0], method="asymptotic")
    assert (result.interval.low, result.interval.high) == (-math.inf, math.inf)


def test_exact_interval_covers_at_its_level() -> None:
    x, y = _pair(5, 7, 8, 0.0, None)
    result = mann_whitney(x, y, alpha=0.05)
    counts = u_null_distribution(7, 8)
    total = sum(counts)
    diffs = np.sort(np.subtract.outer(y, x).ravel())
    k = int(np.searchsorted(diffs, result.interval.low)) + 1
    # k is the largest index with P(U <= k - 1) <= alpha / 2.
    assert sum(counts[:k]) / total <= 0.025 < sum(counts[: k + 1]) / total


def test_identical_samples() -> None:
    x = np.array([5.0, 5.0, 5.0, 5.0])
    result = mann_whitney(x, x.copy(), method="asymptotic")
    ref = sps.mannwhitneyu(x, x, method="asymptotic")
    assert result.p_value == pytest.approx(float(ref.pvalue)) == 1.0
    assert result.estimate == 0.0
    assert result.extra["superiority"] == 0.5


@pytest.mark.parametrize("null_shift", [1.5, -2.0])
@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_shifted_null_is_the_test_of_the_shifted_sample(
    null_shift: float, alternative: Alternative
) -> None:
    x, y = _pair(11, 80, 70, 1.0, None)
    ours = mann_whitney(x, y, null_shift=null_shift, alternative=alternative, method="asymptotic")
    ref = sps.mannwhitneyu(y - null_shift, x, alternative=alternative, method="asymptotic")
    assert ours.statistic == pytest.approx(float(ref.statistic), abs=1e-9)
    assert ours.p_value == pytest.approx(float(ref.pvalue), abs=1e-6)


def _hist_pair(seed: int, m: int, n: int, ratio: float) -> tuple[LogHistogram, LogHistogram]:
    rng = np.random.default_rng(seed)
    return (
        LogHistogram.of(rng.lognormal(3.0, 0.6, m).tolist()),
        LogHistogram.of((rng.lognormal(3.0, 0.6, n) * ratio).tolist()),
    )


@pytest.mark.parametrize(
    ("seed", "m", "n", "ratio"),
    [
        pytest.param(1, 500, 800, 1.0, id="latency histograms, no effect"),
        pytest.param(2, 300, 200, 1.15, id="treatment 15 % slower"),
        pytest.param(3, 5, 4, 1.0, id="tiny histograms"),
    ],
)
@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_counts_match_scipy_on_expanded_samples(
    seed: int, m: int, n: int, ratio: float, alternative: Alternative
) -> None:
    hx, hy = _hist_pair(seed, m, n, ratio)
    values = np.array(log_midpoints())
    cx, cy = np.array(hx.counts()), np.array(hy.counts())
    ours = mann_whitney_counts(values, cx, cy, alternative=alternative)
    x, y = np.repeat(values, cx), np.repeat(values, cy)
    ref = sps.mannwhitneyu(y, x, alternative=alternative, method="asymptotic")
    assert ours.statistic == pytest.approx(float(ref.statistic), abs=1e-9)
    assert ours.p_value == pytest.approx(float(ref.pvalue), abs=1e-6)
    assert ours.estimate == pytest.approx(float(np.median(np.subtract.outer(y, x))), abs=1e-9)
    low, high = _brute_moses(x, y, 0.05)
    if alternative == "two-sided":
        assert ours.interval.low == pytest.approx(low, abs=1e-9)
        assert ours.interval.high == pytest.approx(high, abs=1e-9)


@pytest.mark.parametrize("steps", [-3, 2])
def test_counts_with_shifted_null_match_samples(steps: int) -> None:
    hx, hy = _hist_pair(4, 400, 300, 1.2)
    values = np.array(log_midpoints())
    shift = steps * (values[1] - values[0])
    cx, cy = np.array(hx.counts()), np.array(hy.counts())
    ours = mann_whitney_counts(values, cx, cy, null_shift=shift, alternative="greater")
    sample = mann_whitney(
        np.repeat(values, cx),
        np.repeat(values, cy),
        null_shift=shift,
        alternative="greater",
        method="asymptotic",
    )
    assert ours.statistic == pytest.approx(sample.statistic, abs=1e-6)
    assert ours.p_value == pytest.approx(sample.p_value, abs=1e-6)


def test_counts_detect_a_fifteen_percent_slowdown_as_a_ratio() -> None:
    hx, hy = _hist_pair(6, 3000, 3000, 1.15)
    result = mann_whitney_counts(log_midpoints(), hx.counts(), hy.counts())
    assert math.exp(result.estimate) == pytest.approx(1.15, rel=0.05)
    assert math.exp(result.interval.low) > 1.05
    assert result.p_value < 1e-6


def test_counts_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="increasing"):
        mann_whitney_counts([1.0, 1.0], [1, 1], [1, 1])
    with pytest.raises(ValueError, match="one length"):
        mann_whitney_counts([1.0, 2.0], [1], [1, 1])
    with pytest.raises(ValueError, match="at least one"):
        mann_whitney_counts([1.0, 2.0], [0, 0], [1, 1])


def test_large_samples_use_selection_and_agree_with_brute_force(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, y = _pair(8, 300, 250, 1.0, 2)
    monkeypatch.setattr(ranks, "MATERIALISE_MAX_PAIRS", 10)
    ours = mann_whitney(x, y, null_shift=0.7, method="asymptotic")
    ref = sps.mannwhitneyu(y - 0.7, x, method="asymptotic")
    assert ours.estimate == pytest.approx(float(np.median(np.subtract.outer(y, x))), abs=1e-9)
    low, high = _brute_moses(x, y - 0.7, 0.05)
    assert ours.interval.low == pytest.approx(low + 0.7, abs=1e-9)
    assert ours.interval.high == pytest.approx(high + 0.7, abs=1e-9)
    assert ours.p_value == pytest.approx(float(ref.pvalue), abs=1e-6)


samples = st.lists(st.integers(0, 30).map(float), min_size=1, max_size=25)


@settings(max_examples=60)
@given(samples, samples, st.sampled_from(ALTERNATIVES))
def test_invariants(x: list[float], y: list[float], alternative: Alternative) -> None:
    result = mann_whitney(x, y, alternative=alternative)
    assert 0.0 <= result.p_value <= 1.0
    assert 0.0 <= result.extra["superiority"] <= 1.0
    assert result.interval.contains(result.estimate)
