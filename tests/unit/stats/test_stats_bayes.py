"""Bayesian chance to beat control: closed forms and Monte Carlo as oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special
from scipy import stats as sps

from rollwise.stats.bayes import beta_binomial, normal_means


def _miller_prob_b_beats_a(a_a: int, b_a: int, a_b: int, b_b: int) -> float:
    """Closed form for integer parameters (Miller 2015), summed in log space."""
    total = 0.0
    for i in range(a_b):
        total += math.exp(
            special.betaln(a_a + i, b_a + b_b)
            - math.log(b_b + i)
            - special.betaln(1 + i, b_b)
            - special.betaln(a_a, b_a)
        )
    return total


@pytest.mark.parametrize(
    ("xc", "nc", "xt", "nt"),
    [
        pytest.param(20, 200, 30, 200, id="equal sizes"),
        pytest.param(5, 90, 40, 500, id="unequal sizes"),
        pytest.param(0, 50, 0, 80, id="zero counts"),
        pytest.param(1, 3, 2, 4, id="tiny samples"),
        pytest.param(60, 100, 60, 100, id="identical data"),
    ],
)
def test_chance_to_beat_matches_the_closed_form(xc: int, nc: int, xt: int, nt: int) -> None:
    result = beta_binomial(xc, nc, xt, nt)
    expected = _miller_prob_b_beats_a(1 + xc, 1 + nc - xc, 1 + xt, 1 + nt - xt)
    assert result.prob_better == pytest.approx(expected, abs=1e-6)
    lower = beta_binomial(xc, nc, xt, nt, higher_is_better=False)
    assert lower.prob_better == pytest.approx(1 - expected, abs=1e-6)


def test_identical_data_is_a_coin_flip() -> None:
    assert beta_binomial(60, 100, 60, 100).prob_better == pytest.approx(0.5, abs=1e-6)


def test_expected_loss_matches_monte_carlo() -> None:
    rng = np.random.default_rng(3)
    result = beta_binomial(40, 400, 52, 410, rng=rng, draws=400_000)
    t = rng.beta(1 + 52, 1 + 410 - 52, 1_000_000)
    c = rng.beta(1 + 40, 1 + 400 - 40, 1_000_000)
    assert result.expected_loss_treatment == pytest.approx(np.maximum(c - t, 0).mean(), abs=2e-4)
    assert result.expected_loss_control == pytest.approx(np.maximum(t - c, 0).mean(), abs=2e-4)
    assert result.interval.low < result.estimate < result.interval.high
    diff = t - c
    assert result.interval.low == pytest.approx(np.quantile(diff, 0.025), abs=2e-3)


def test_large_counts_stay_accurate() -> None:
    # Narrow posteriors are where naive quadrature misses the mass.
    result = beta_binomial(10_000, 1_000_000, 10_300, 1_000_000)
    se = math.sqrt(2 * 0.0101 * 0.9899 / 1_000_000)
    assert result.prob_better == pytest.approx(float(special.ndtr(0.0003 / se)), abs=2e-3)


def test_normal_means_closed_form() -> None:
    result = normal_means(400, 10.0, 4.0, 500, 10.3, 9.0)
    se = math.sqrt(4.0 / 400 + 9.0 / 500)
    assert result.prob_better == pytest.approx(float(special.ndtr(0.3 / se)), abs=1e-12)
    posterior = sps.norm(0.3, se)
    loss_t = posterior.expect(lambda d: max(-d, 0.0))
    loss_c = posterior.expect(lambda d: max(d, 0.0))
    assert result.expected_loss_treatment == pytest.approx(loss_t, abs=1e-8)
    assert result.expected_loss_control == pytest.approx(loss_c, abs=1e-8)
    lower = normal_means(400, 10.0, 4.0, 500, 10.3, 9.0, higher_is_better=False)
    assert lower.prob_better == pytest.approx(1 - result.prob_better, abs=1e-12)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        beta_binomial(5, 3, 1, 4)
    with pytest.raises(ValueError):
        beta_binomial(1, 3, 1, 4, prior=(0.0, 1.0))
    with pytest.raises(ValueError):
        normal_means(1, 1.0, 1.0, 5, 1.0, 1.0)
