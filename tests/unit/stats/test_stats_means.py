"""Welch's t-test from summary statistics against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from rollwise.stats.means import mean_estimate, moments_from_sums, welch_ttest
from rollwise.stats.results import Alternative


def _samples(
    seed: int, n_c: int, n_t: int, shift: float, scale_t: float
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(10.0, 2.0, n_c), rng.normal(10.0 + shift, 2.0 * scale_t, n_t)


SAMPLES = [
    pytest.param(1, 200, 200, 0.5, 1.0, id="equal sizes"),
    pytest.param(2, 50, 900, 0.3, 3.0, id="unequal sizes and variances"),
    pytest.param(3, 2, 3, 1.0, 1.0, id="tiny samples"),
    pytest.param(4, 1000, 1000, 0.0, 1.0, id="no effect"),
]


def _stats(x: np.ndarray) -> tuple[int, float, float]:
    return x.size, float(x.mean()), float(x.var(ddof=1))


@pytest.mark.parametrize(("seed", "n_c", "n_t", "shift", "scale_t"), SAMPLES)
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
@pytest.mark.parametrize("null_diff", [0.0, 0.25])
def test_welch_matches_scipy(
    seed: int,
    n_c: int,
    n_t: int,
    shift: float,
    scale_t: float,
    alternative: Alternative,
    null_diff: float,
) -> None:
    x, y = _samples(seed, n_c, n_t, shift, scale_t)
    ours = welch_ttest(*_stats(x), *_stats(y), null_diff=null_diff, alternative=alternative)
    ref = sps.ttest_ind(y - null_diff, x, equal_var=False, alternative=alternative)
    assert ours.statistic == pytest.approx(float(ref.statistic), abs=1e-6)
    assert ours.p_value == pytest.approx(float(ref.pvalue), abs=1e-6)
    assert ours.extra["df"] == pytest.approx(float(ref.df), abs=1e-6)
    ci = ref.confidence_interval(confidence_level=0.95)
    assert ours.interval.low == pytest.approx(float(ci.low) + null_diff, abs=1e-6)
    assert ours.interval.high == pytest.approx(float(ci.high) + null_diff, abs=1e-6)
    from_stats = sps.ttest_ind_from_stats(
        y.mean() - null_diff,
        y.std(ddof=1),
        n_t,
        x.mean(),
        x.std(ddof=1),
        n_c,
        equal_var=False,
        alternative=alternative,
    )
    assert ours.p_value == pytest.approx(float(from_stats.pvalue), abs=1e-6)


def test_identical_constant_samples_give_no_evidence() -> None:
    result = welch_ttest(10, 3.0, 0.0, 12, 3.0, 0.0)
    assert (result.statistic, result.p_value) == (0.0, 1.0)
    assert (result.interval.low, result.interval.high) == (0.0, 0.0)


def test_different_constant_samples_are_certainly_different() -> None:
    result = welch_ttest(10, 3.0, 0.0, 12, 4.0, 0.0, alternative="greater")
    assert result.statistic == math.inf
    assert result.p_value == 0.0


def test_arms_need_two_values() -> None:
    with pytest.raises(ValueError, match="two values"):
        welch_ttest(1, 3.0, 0.0, 12, 4.0, 1.0)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([1.0, 2.0, 3.0, 4.0], id="small integers"),
        pytest.param([1e3 + 0.1, 1e3 + 0.2, 1e3 + 0.3], id="offset much larger than the spread"),
        pytest.param([5.0, 5.0, 5.0], id="constant"),
    ],
)
def test_moments_from_sums(values: list[float]) -> None:
    arr = np.array(values)
    mean, var = moments_from_sums(arr.size, float(arr.sum()), float((arr**2).sum()))
    assert mean == pytest.approx(arr.mean())
    assert var == pytest.approx(arr.var(ddof=1), abs=1e-6)
    assert math.isnan(moments_from_sums(1, 2.0, 4.0)[1])


def test_mean_estimate_standard_error() -> None:
    est = mean_estimate(100, 2.0, 4.0)
    assert (est.value, est.se, est.n_eff) == (2.0, 0.2, 100.0)


arms = st.tuples(
    st.integers(2, 10_000), st.floats(-1e3, 1e3), st.floats(0.0, 1e4, allow_subnormal=False)
)


@given(arms, arms, st.sampled_from(["two-sided", "greater", "less"]))
def test_invariants(
    control: tuple[int, float, float], treatment: tuple[int, float, float], alt: Alternative
) -> None:
    result = welch_ttest(*control, *treatment, alternative=alt)
    assert 0.0 <= result.p_value <= 1.0
    assert result.interval.contains(result.estimate)
