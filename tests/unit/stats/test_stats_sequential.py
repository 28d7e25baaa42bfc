"""Confidence sequences and e-values: algebra, consistency and peeking simulations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollwise.stats import sequential as seq
from rollwise.stats.estimates import Estimate, z_interval
from rollwise.stats.results import Alternative, Decision
from rollwise.stats.simulation import simulate_means, simulate_proportions, simulate_srm


@pytest.mark.parametrize("t", [1.0, 37.0, 1000.0, 1e6])
@pytest.mark.parametrize("alpha", [0.001, 0.05, 0.2])
def test_boundary_is_where_the_e_value_reaches_one_over_alpha(t: float, alpha: float) -> None:
    rho = seq.mixing_precision(500.0, alpha)
    b = seq.boundary(t, alpha, rho)
    assert seq.log_e_value(b, t, rho) == pytest.approx(math.log(1 / alpha), abs=1e-9)
    assert seq.log_e_value(b * 0.99, t, rho) < math.log(1 / alpha)


def test_vectorised_boundaries_match_scalar() -> None:
    t = np.array([1.0, 10.0, 1e3, 1e5])
    rho = seq.mixing_precision(1000.0, 0.025)
    vector = seq.boundaries(t, 0.025, rho)
    for i, ti in enumerate(t):
        assert vector[i] == pytest.approx(seq.boundary(float(ti), 0.025, rho), rel=1e-12)


def test_mixing_precision_makes_the_boundary_tightest_near_the_horizon() -> None:
    horizon, alpha = 2000.0, 0.05
    best = seq.mixing_precision(horizon, alpha)
    at_best = seq.boundary(horizon, alpha, best)
    for factor in (0.25, 0.5, 2.0, 4.0):
        assert seq.boundary(horizon, alpha, best * factor) > at_best


def test_confidence_sequence_is_wider_than_the_fixed_interval() -> None:
    est = Estimate(0.3, 0.1, 400.0)
    cs = seq.confidence_sequence(est, alpha=0.05)
    ci = z_interval(0.3, 0.1, 0.05)
    assert cs.low < ci.low and cs.high > ci.high
    assert cs.high - 0.3 == pytest.approx(0.3 - cs.low)


def test_one_sided_sequences_have_one_infinite_end() -> None:
    est = Estimate(1.0, 0.2, 100.0)
    greater = seq.confidence_sequence(est, alternative="greater")
    less = seq.confidence_sequence(est, alternative="less")
    assert greater.high == math.inf and less.low == -math.inf
    assert greater.low == pytest.approx(2 * 1.0 - less.high)


estimates = st.builds(
    Estimate,
    value=st.floats(-5, 5),
    se=st.floats(1e-3, 3),
    n_eff=st.floats(2, 1e6),
)


@given(estimates, st.floats(-5, 5), st.sampled_from(["two-sided", "greater", "less"]))
def test_decision_and_interval_agree(est: Estimate, null: float, alt: Alternative) -> None:
    result = seq.sequential_test(est, null_value=null, alternative=alt, alpha=0.05)
    assert 0.0 <= result.p_value <= 1.0
    assert result.interval.contains(est.value)
    excluded = not result.interval.contains(null)
    # Allow for rounding right at the boundary.
    if abs(result.p_value - 0.05) > 1e-6:
        assert result.reject == excluded
    assert result.decision in (Decision.REJECT, Decision.CONTINUE)


def test_e_value_tests_composite_one_sided_nulls() -> None:
    # Evidence against "θ ≤ 0.1" is weaker than against "θ ≤ 0" for the same data.
    est = Estimate(0.3, 0.05, 2000.0)
    e_strict = seq.e_value(est, 0.0, alternative="greater")
    e_margin = seq.e_value(est, 0.1, alternative="greater")
    assert e_strict > e_margin > 1.0
    assert seq.e_value(est, 0.0, alternative="less") < 1.0


def test_zero_standard_error() -> None:
    same = seq.sequential_test(Estimate(0.0, 0.0, 50.0))
    assert same.p_value == 1.0
    apart = seq.sequential_test(Estimate(1.0, 0.0, 50.0))
    assert apart.p_value == 0.0


def test_dkw_radii() -> None:
    assert seq.dkw_radius(100, 0.05) == pytest.approx(math.sqrt(math.log(40) / 200))
    uniform = seq.dkw_radius_uniform(100, 0.05)
    assert uniform == pytest.approx(
        0.85 * math.sqrt((math.log(math.log(math.e * 100)) + 0.8 * math.log(1612 / 0.05)) / 100)
    )
    assert uniform > seq.dkw_radius(100, 0.05)


def test_time_uniform_dkw_band_holds_across_looks() -> None:
    rng = np.random.default_rng(12)
    replicates, n = 400, 2000
    values = rng.uniform(size=(replicates, n))
    misses = 0
    looks = np.unique(np.geomspace(10, n, 40).astype(int))
    for row in values:
        for t in looks:
            ecdf_gap = np.max(np.abs(np.arange(1, t + 1) / t - np.sort(row[:t])))
            if ecdf_gap > seq.dkw_radius_uniform(t, 0.05):
                misses += 1
                break
    assert misses / replicates <= 0.05


# --- peeking simulations: a look after every batch -------------------------------------

ALPHA = 0.05


def _within_alpha(rate: float, se: float) -> bool:
    return rate <= ALPHA + 2.5 * se


@pytest.mark.parametrize(
    "p",
    [pytest.param(0.02, id="error rate 2 %"), pytest.param(0.3, id="rate 30 %")],
)
def test_aa_proportions_sequential_keeps_alpha_and_naive_does_not(p: float) -> None:
    rates = simulate_proportions(
        np.random.default_rng(2024),
        p_control=p,
        p_treatment=p,
        batch_control=100,
        batch_treatment=100,
        looks=40,
        replicates=1500,
    )
    assert _within_alpha(rates["sequential"].rate, rates["sequential"].mc_se)
    assert rates["naive"].rate > ALPHA + 5 * rates["naive"].mc_se
    assert abs(rates["fixed"].rate - ALPHA) < 4 * rates["fixed"].mc_se


def test_ab_proportions_sequential_detects_a_real_effect() -> None:
    rates = simulate_proportions(
        np.random.default_rng(7),
        p_control=0.05,
        p_treatment=0.08,
        batch_control=100,
        batch_treatment=100,
        looks=40,
        replicates=1000,
    )
    assert rates["sequential"].rate > 0.9


def test_aa_means_on_skewed_latency_like_data() -> None:
    rates = simulate_means(
        np.random.default_rng(99),
        mean_control=120.0,
        mean_treatment=120.0,
        sd_control=90.0,
        sd_treatment=90.0,
        batch_control=60,
        batch_treatment=40,
        looks=40,
        replicates=1200,
        lognormal=True,
    )
    assert _within_alpha(rates["sequential"].rate, rates["sequential"].mc_se)
    assert rates["naive"].rate > ALPHA + 5 * rates["naive"].mc_se


def test_ab_means_sequential_detects_a_real_effect() -> None:
    rates = simulate_means(
        np.random.default_rng(5),
        mean_control=10.0,
        mean_treatment=10.5,
        sd_control=2.0,
        sd_treatment=2.0,
        batch_control=50,
        batch_treatment=50,
        looks=40,
        replicates=1000,
    )
    assert rates["sequential"].rate > 0.9


def test_srm_sequential_stays_quiet_on_a_fair_split_and_catches_a_skewed_one() -> None:
    fair = simulate_srm(
        np.random.default_rng(3),
        weights_percent=(90, 10),
        true_share_treatment=0.10,
        batch=200,
        looks=60,
        replicates=1500,
        alpha=0.01,
    )
    assert fair["sequential"].rate <= 0.01 + 2.5 * fair["sequential"].mc_se
    assert fair["naive"].rate > fair["sequential"].rate
    skewed = simulate_srm(
        np.random.default_rng(4),
        weights_percent=(90, 10),
        true_share_treatment=0.085,
        batch=200,
        looks=60,
        replicates=500,
        alpha=0.01,
    )
    assert skewed["sequential"].rate > 0.9
