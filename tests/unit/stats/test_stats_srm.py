"""Sample-ratio mismatch: chi-square against scipy, and the sequential e-value."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special
from scipy import stats as sps

from rollwise.stats.srm import srm_chisquare, srm_sequential


@pytest.mark.parametrize(
    ("observed", "weights"),
    [
        pytest.param([5000, 5000], [50, 50], id="perfect 50/50"),
        pytest.param([9100, 880], [90, 10], id="90/10 slightly short on the candidate"),
        pytest.param([700, 200, 100], [70, 20, 10], id="three arms"),
        pytest.param([3, 1], [50, 50], id="tiny counts"),
        pytest.param([12_000, 10_000], [50, 50], id="clear mismatch"),
    ],
)
def test_chisquare_matches_scipy(observed: list[int], weights: list[int]) -> None:
    ours = srm_chisquare(observed, weights)
    total = sum(observed)
    ref = sps.chisquare(observed, [total * w / 100 for w in weights])
    assert ours.statistic == pytest.approx(float(ref.statistic), abs=1e-6)
    assert ours.p_value == pytest.approx(float(ref.pvalue), abs=1e-6)
    assert ours.df == len(observed) - 1


def test_clear_mismatch_is_flagged_and_a_fair_split_is_not() -> None:
    assert srm_chisquare([12_000, 10_000], [50, 50]).mismatch
    assert not srm_chisquare([5020, 4980], [50, 50]).mismatch


def test_zero_weight_arm_with_traffic_is_a_certain_mismatch() -> None:
    result = srm_chisquare([100, 3], [100, 0])
    assert result.p_value == 0.0 and result.mismatch
    assert srm_sequential([100, 3], [100, 0]).mismatch


def test_zero_weight_arm_without_traffic_is_left_out() -> None:
    result = srm_chisquare([600, 400, 0], [60, 40, 0])
    ref = sps.chisquare([600, 400], [600, 400])
    assert result.p_value == pytest.approx(float(ref.pvalue))
    assert result.df == 1


def test_no_traffic_is_no_evidence() -> None:
    assert srm_chisquare([0, 0], [50, 50]).p_value == 1.0
    assert srm_sequential([0, 0], [50, 50]).p_value == 1.0


@pytest.mark.parametrize(
    ("observed", "weights", "message"),
    [
        pytest.param([1, 2], [50, 40], "sum to 100", id="weights not summing to 100"),
        pytest.param([1, 2], [50.5, 49.5], "integer", id="fractional weights"),
        pytest.param([1], [100], "at least two", id="one arm"),
        pytest.param([1, -2], [50, 50], ">= 0", id="negative count"),
    ],
)
def test_bad_input_is_refused(observed: list[int], weights: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        srm_chisquare(observed, weights)  # type: ignore[arg-type]


def test_sequential_e_value_is_the_dirichlet_multinomial_bayes_factor() -> None:
    observed, theta, a = [530, 470], np.array([0.5, 0.5]), 100.0
    alpha_prior = a * theta
    log_marginal = (
        special.gammaln(a)
        - special.gammaln(a + sum(observed))
        + sum(special.gammaln(alpha_prior + observed) - special.gammaln(alpha_prior))
    )
    log_null = sum(o * math.log(t) for o, t in zip(observed, theta, strict=True))
    result = srm_sequential(observed, [50, 50], concentration=a)
    assert result.statistic == pytest.approx(log_marginal - log_null, abs=1e-9)
    assert result.e_value == pytest.approx(math.exp(log_marginal - log_null), rel=1e-9)
    assert result.e_value is not None
    assert result.p_value == pytest.approx(min(1.0, 1.0 / result.e_value))


def test_sequential_flags_a_large_mismatch_and_not_a_fair_split() -> None:
    assert srm_sequential([12_000, 10_000], [50, 50]).mismatch
    assert not srm_sequential([5020, 4980], [50, 50]).mismatch


def test_sequential_is_more_conservative_than_a_single_chisquare() -> None:
    # The price of looking at every tick: the same data give a larger p-value.
    fixed = srm_chisquare([5300, 4700], [50, 50])
    seq = srm_sequential([5300, 4700], [50, 50])
    assert fixed.p_value < seq.p_value


def test_results_serialise_infinite_figures() -> None:
    data = srm_chisquare([100, 3], [100, 0]).to_dict()
    assert data["statistic"] == "inf"
    assert data["mismatch"] is True
