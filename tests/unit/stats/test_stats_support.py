"""Estimates, quantiles, drift, multiple testing and power planning against oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    power_proportions_2indep,
    samplesize_proportions_2indep_onetail,
)

from rollwise.metrics.histogram import LogHistogram
from rollwise.stats import drift, multiple, power
from rollwise.stats.estimates import Estimate, difference, log_ratio, z_interval, z_test
from rollwise.stats.quantiles import quantile_estimate, tail_count
from rollwise.stats.simulation import simulate_proportions

# --- estimates ---------------------------------------------------------------------------


def test_difference_adds_variances_and_reports_effective_size() -> None:
    c, t = Estimate(1.0, 0.3, 100.0), Estimate(1.5, 0.4, 50.0)
    d = difference(c, t)
    assert d.value == 0.5
    assert d.se == pytest.approx(0.5)
    # Per-observation variances 9 and 8, so n_eff = 17 / 0.25.
    assert d.n_eff == pytest.approx(68.0)


def test_equal_variances_give_the_harmonic_mean_size() -> None:
    d = difference(Estimate(0.0, 1 / math.sqrt(100), 100.0), Estimate(0.0, 1 / math.sqrt(300), 300))
    assert d.n_eff == pytest.approx(2 / (1 / 100 + 1 / 300))


def test_log_ratio_uses_the_delta_method() -> None:
    r = log_ratio(Estimate(100.0, 5.0, 400.0), Estimate(110.0, 5.5, 400.0))
    assert r.value == pytest.approx(math.log(1.1))
    assert r.se == pytest.approx(math.sqrt(0.05**2 * 2))
    with pytest.raises(ValueError, match="non-positive"):
        Estimate(0.0, 1.0, 10.0).log()


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_z_test_matches_scipy_normal(alternative: str) -> None:
    z, p, ci = z_test(Estimate(0.4, 0.2, 100.0), 0.1, alternative, alpha=0.1)  # type: ignore[arg-type]
    assert z == pytest.approx(1.5)
    expected_p = {
        "two-sided": 2 * sps.norm.sf(1.5),
        "greater": sps.norm.sf(1.5),
        "less": sps.norm.cdf(1.5),
    }[alternative]
    assert p == pytest.approx(expected_p, abs=1e-12)
    if alternative == "two-sided":
        low, high = sps.norm.interval(0.9, loc=0.4, scale=0.2)
        assert ci.low == pytest.approx(low)
        assert ci.high == pytest.approx(high)


def test_z_interval_refuses_bad_alpha() -> None:
    with pytest.raises(ValueError):
        z_interval(0.0, 1.0, 0.0)


# --- quantiles ---------------------------------------------------------------------------


@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
def test_woodruff_standard_error_matches_the_asymptotic_formula(q: float) -> None:
    rng = np.random.default_rng(21)
    dist = sps.lognorm(s=0.5, scale=math.exp(4.0))
    n = 200_000
    hist = LogHistogram.of(dist.rvs(size=n, random_state=rng).tolist())
    est = quantile_estimate(hist, q)
    true_q = dist.ppf(q)
    asymptotic_se = math.sqrt(q * (1 - q) / n) / dist.pdf(true_q)
    assert est.value == pytest.approx(true_q, rel=0.02)
    assert est.se == pytest.approx(asymptotic_se, rel=0.25)
    assert est.n_eff == n
    assert tail_count(hist, q) == pytest.approx(n * min(q, 1 - q))


def test_quantile_estimate_refuses_too_little_data() -> None:
    with pytest.raises(ValueError, match="two values"):
        quantile_estimate(LogHistogram.of([1.0]), 0.5)
    with pytest.raises(ValueError, match="quantile"):
        quantile_estimate(LogHistogram.of([1.0, 2.0]), 1.0)


# --- drift -------------------------------------------------------------------------------


def _psi_reference(c: np.ndarray, t: np.ndarray) -> float:
    keep = (c + t) > 0
    c, t = c[keep] + 0.5, t[keep] + 0.5
    p, q = c / c.sum(), t / t.sum()
    return float(np.sum((q - p) * np.log(q / p)))


@pytest.mark.parametrize(
    ("control", "treatment"),
    [
        pytest.param([500, 300, 200], [450, 330, 220], id="three classes, mild drift"),
        pytest.param([100, 0, 50], [80, 20, 0], id="classes missing in one arm"),
        pytest.param([10, 10], [10, 10], id="identical"),
    ],
)
def test_psi_value(control: list[int], treatment: list[int]) -> None:
    est = drift.psi(control, treatment)
    assert est.value == pytest.approx(_psi_reference(np.array(control), np.array(treatment)))
    assert est.value >= 0.0


def test_psi_standard_error_matches_simulation() -> None:
    rng = np.random.default_rng(8)
    p = np.array([0.5, 0.3, 0.15, 0.05])
    q = np.array([0.4, 0.3, 0.2, 0.1])
    n = 4000
    values = [drift.psi(rng.multinomial(n, p), rng.multinomial(n, q)).value for _ in range(1500)]
    est = drift.psi((p * n).astype(int), (q * n).astype(int))
    assert est.se == pytest.approx(float(np.std(values)), rel=0.1)


def test_align_categorical_outputs() -> None:
    keys, c, t = drift.align({"cat": 3, "dog": 1}, {"dog": 2, "eel": 4})
    assert keys == ["cat", "dog", "eel"]
    assert (c, t) == ([3, 1, 0], [0, 2, 4])


@pytest.mark.parametrize(
    ("seed", "m", "n", "scale"),
    [
        pytest.param(1, 400, 600, 1.0, id="same distribution"),
        pytest.param(2, 300, 300, 1.3, id="treatment 30 % larger"),
        pytest.param(3, 20, 7, 1.0, id="tiny samples"),
    ],
)
def test_ks_matches_scipy_on_expanded_histograms(seed: int, m: int, n: int, scale: float) -> None:
    rng = np.random.default_rng(seed)
    hc = LogHistogram.of(rng.lognormal(2, 0.7, m).tolist())
    ht = LogHistogram.of((rng.lognormal(2, 0.7, n) * scale).tolist())
    ours = drift.ks_counts(hc.counts(), ht.counts(), sequential=False)
    mids = np.array(hc.bucket_midpoints())
    ref = sps.ks_2samp(np.repeat(mids, hc.counts()), np.repeat(mids, ht.counts()), method="asymp")
    assert ours.statistic == pytest.approx(float(ref.statistic), abs=1e-12)
    assert ours.p_value == pytest.approx(float(ref.pvalue), abs=1e-6)
    assert ours.interval.contains(ours.statistic)
    seq = drift.ks_counts(hc.counts(), ht.counts(), sequential=True)
    assert seq.interval.width >= ours.interval.width


# --- multiple testing ------------------------------------------------------------------

p_lists = st.lists(st.floats(0, 1), min_size=1, max_size=12)


@pytest.mark.parametrize(
    ("ours", "sm_method"),
    [
        (multiple.holm, "holm"),
        (multiple.benjamini_hochberg, "fdr_bh"),
        (multiple.bonferroni, "bonferroni"),
    ],
)
@pytest.mark.parametrize(
    "ps",
    [
        pytest.param([0.01, 0.04, 0.03, 0.2], id="four gates"),
        pytest.param([0.5], id="one gate"),
        pytest.param([0.0, 1.0, 0.02, 0.02], id="ties and extremes"),
    ],
)
def test_corrections_match_statsmodels(ours: object, sm_method: str, ps: list[float]) -> None:
    expected = multipletests(ps, method=sm_method)[1]
    np.testing.assert_allclose(ours(ps), expected, atol=1e-12)  # type: ignore[operator]


@given(p_lists)
def test_adjusted_p_values_never_shrink(ps: list[float]) -> None:
    for method in ("holm", "bh", "bonferroni"):
        adjusted = multiple.adjust(ps, method)
        assert all(a >= p - 1e-15 and a <= 1.0 for a, p in zip(adjusted, ps, strict=True))
    assert multiple.adjust(ps, "none") == ps


def test_unknown_correction_is_refused() -> None:
    with pytest.raises(ValueError, match="correction"):
        multiple.adjust([0.1], "fdr")  # type: ignore[arg-type]


# --- power -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "mde", "ratio", "alternative"),
    [
        pytest.param(0.05, 0.01, 1.0, "two-sided", id="error rate 5 % to 6 %"),
        pytest.param(0.9, -0.02, 1.0, "two-sided", id="accuracy drop of two points"),
        pytest.param(0.02, 0.005, 1 / 9, "two-sided", id="canary at 10 % traffic"),
        pytest.param(0.1, 0.02, 2.0, "greater", id="one-sided, unequal allocation"),
    ],
)
def test_proportion_sample_size_matches_statsmodels(
    baseline: float, mde: float, ratio: float, alternative: str
) -> None:
    ours = power.sample_size_proportions(
        baseline,
        mde,
        alpha=0.05,
        power=0.8,
        ratio=ratio,
        alternative=alternative,  # type: ignore[arg-type]
    )
    sm_alt = "two-sided" if alternative == "two-sided" else "larger"
    n_t = samplesize_proportions_2indep_onetail(
        mde, baseline, 0.8, ratio=1 / ratio, alpha=0.05, alternative=sm_alt
    )
    assert ours.n_treatment == math.ceil(n_t)
    assert ours.n_control == math.ceil(n_t / ratio - 1e-9)
    achieved = power.power_proportions(
        baseline,
        mde,
        ours.n_control,
        ours.n_treatment,
        alternative=alternative,  # type: ignore[arg-type]
    )
    assert achieved >= 0.8 - 1e-3


@pytest.mark.parametrize("n", [100, 3000])
def test_proportion_power_matches_statsmodels(n: int) -> None:
    ours = power.power_proportions(0.05, 0.01, n, n)
    ref = power_proportions_2indep(0.01, 0.05, n, ratio=1.0, alpha=0.05)
    assert ours == pytest.approx(float(ref.power), abs=1e-6)


@pytest.mark.parametrize("ratio", [1.0, 0.25])
def test_mean_sample_size_matches_statsmodels(ratio: float) -> None:
    ours = power.sample_size_means(2.0, 0.25, ratio=ratio, alternative="greater")
    # statsmodels sizes the first arm and puts ratio * n1 in the second.
    n_c = NormalIndPower().solve_power(
        effect_size=0.125, alpha=0.05, power=0.8, ratio=ratio, alternative="larger"
    )
    assert ours.n_control == math.ceil(n_c - 1e-9)
    assert ours.n_treatment == pytest.approx(ratio * n_c, abs=1.0)


def test_sample_size_refuses_impossible_plans() -> None:
    with pytest.raises(ValueError, match="non-zero"):
        power.sample_size_proportions(0.1, 0.0)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        power.sample_size_proportions(0.99, 0.05)
    with pytest.raises(ValueError, match="power"):
        power.sample_size_means(1.0, 0.1, power=1.0)


def test_duration_from_traffic() -> None:
    size = power.SampleSize(n_control=9000, n_treatment=1000)
    assert size.duration_s(requests_per_s=100.0, treatment_percent=10) == pytest.approx(100.0)


def test_sequential_sample_size_costs_more_than_fixed_and_delivers_its_power() -> None:
    fixed = power.sample_size_proportions(0.05, 0.02)
    planned = power.sequential_sample_size_proportions(0.05, 0.02)
    assert 1.2 * fixed.n_treatment < planned.n_treatment < 3 * fixed.n_treatment
    looks = 20
    batch = math.ceil(planned.n_treatment / looks)
    rates = simulate_proportions(
        np.random.default_rng(17),
        p_control=0.05,
        p_treatment=0.07,
        batch_control=batch,
        batch_treatment=batch,
        looks=looks,
        replicates=800,
        horizon=planned.n_treatment,
    )
    detected = rates["sequential"]
    assert detected.rate >= 0.8 - 2.5 * detected.mc_se


def test_sequential_sample_size_for_means() -> None:
    size = power.sequential_sample_size_means(2.0, 0.2)
    fixed = power.sample_size_means(2.0, 0.2)
    assert size.n_control > fixed.n_control
