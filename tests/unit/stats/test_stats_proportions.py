"""Proportion tests and intervals against statsmodels, plus invariants."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)
from statsmodels.stats.proportion import (
    test_proportions_2indep as sm_test_proportions_2indep,
)

from rollwise.stats.proportions import (
    difference_interval,
    one_proportion_ztest,
    proportion_estimate,
    two_proportion_ztest,
    wilson_interval,
)
from rollwise.stats.results import Alternative, Decision

SM_ALTERNATIVE = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}

# (x_control, n_control, x_treatment, n_treatment)
TABLE = [
    pytest.param(30, 1000, 45, 1000, id="equal sizes, higher treatment rate"),
    pytest.param(12, 400, 50, 2600, id="unequal sizes"),
    pytest.param(0, 500, 7, 800, id="zero errors in control"),
    pytest.param(9, 300, 0, 310, id="zero errors in treatment"),
    pytest.param(3, 7, 5, 9, id="tiny samples"),
    pytest.param(940, 1000, 951, 1000, id="high rates such as accuracy"),
    pytest.param(250, 500, 250, 500, id="identical rates"),
]


@pytest.mark.parametrize(("xc", "nc", "xt", "nt"), TABLE)
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_pooled_z_matches_statsmodels(
    xc: int, nc: int, xt: int, nt: int, alternative: Alternative
) -> None:
    ours = two_proportion_ztest(xc, nc, xt, nt, alternative=alternative)
    z, p = proportions_ztest([xt, xc], [nt, nc], alternative=SM_ALTERNATIVE[alternative])
    assert ours.statistic == pytest.approx(float(z), abs=1e-6)
    assert ours.p_value == pytest.approx(float(p), abs=1e-6)
    assert ours.estimate == pytest.approx(xt / nt - xc / nc, abs=1e-12)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.parametrize(("xc", "nc", "xt", "nt"), TABLE)
@pytest.mark.parametrize("margin", [0.005, -0.02])
def test_margin_uses_unpooled_wald_like_statsmodels(
    xc: int, nc: int, xt: int, nt: int, margin: float
) -> None:
    for alternative in ("two-sided", "greater", "less"):
        ours = two_proportion_ztest(xc, nc, xt, nt, null_diff=margin, alternative=alternative)
        ref = sm_test_proportions_2indep(
            xt,
            nt,
            xc,
            nc,
            value=margin,
            method="wald",
            compare="diff",
            alternative=SM_ALTERNATIVE[alternative],
        )
        if math.isfinite(float(ref.statistic)):
            assert ours.statistic == pytest.approx(float(ref.statistic), abs=1e-6)
            assert ours.p_value == pytest.approx(float(ref.pvalue), abs=1e-6)


@pytest.mark.parametrize(("xc", "nc", "xt", "nt"), TABLE)
@pytest.mark.parametrize("method", ["newcomb", "wald", "agresti-caffo"])
def test_difference_interval_matches_statsmodels(
    xc: int, nc: int, xt: int, nt: int, method: str
) -> None:
    ours = difference_interval(xc, nc, xt, nt, alpha=0.1, method=method)  # type: ignore[arg-type]
    low, high = confint_proportions_2indep(xt, nt, xc, nc, method=method, compare="diff", alpha=0.1)
    assert ours.low == pytest.approx(float(low), abs=1e-6)
    assert ours.high == pytest.approx(float(high), abs=1e-6)
    assert ours.level == pytest.approx(0.9)


def test_one_sided_interval_is_one_end_of_the_doubled_alpha_interval() -> None:
    two = difference_interval(10, 400, 25, 500, alpha=0.10)
    greater = difference_interval(10, 400, 25, 500, alpha=0.05, alternative="greater")
    less = difference_interval(10, 400, 25, 500, alpha=0.05, alternative="less")
    assert (greater.low, greater.high) == (two.low, 1.0)
    assert (less.low, less.high) == (-1.0, two.high)


def test_all_zero_counts_give_no_evidence() -> None:
    result = two_proportion_ztest(0, 200, 0, 300)
    assert result.statistic == 0.0
    assert result.p_value == 1.0
    assert result.decision is Decision.NO_REJECT
    assert result.interval.low < 0.0 < result.interval.high  # Newcomb does not collapse


@pytest.mark.parametrize(
    ("x", "n"),
    [
        pytest.param(0, 50, id="zero successes"),
        pytest.param(50, 50, id="all successes"),
        pytest.param(3, 4, id="tiny sample"),
        pytest.param(970, 1000, id="high agreement"),
    ],
)
def test_wilson_and_score_test_match_statsmodels(x: int, n: int) -> None:
    ours = wilson_interval(x, n, alpha=0.05)
    low, high = proportion_confint(x, n, alpha=0.05, method="wilson")
    assert ours.low == pytest.approx(float(low), abs=1e-6)
    assert ours.high == pytest.approx(float(high), abs=1e-6)
    for alternative in ("two-sided", "greater", "less"):
        test = one_proportion_ztest(x, n, null_value=0.9, alternative=alternative)
        z, p = proportions_ztest(
            x, n, value=0.9, prop_var=0.9, alternative=SM_ALTERNATIVE[alternative]
        )
        assert test.statistic == pytest.approx(float(z), abs=1e-6)
        assert test.p_value == pytest.approx(float(p), abs=1e-6)


def test_score_test_and_wilson_interval_agree_on_rejection() -> None:
    # The Wilson interval is the inversion of the score test.
    for x in range(0, 101, 5):
        test = one_proportion_ztest(x, 100, null_value=0.8, alpha=0.05)
        assert test.reject == (not test.interval.contains(0.8))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"xc": 5, "nc": 3}, "exceed", id="more successes than trials"),
        pytest.param({"nc": 0, "xc": 0}, "at least one", id="empty arm"),
        pytest.param({"xc": -1}, ">= 0", id="negative count"),
    ],
)
def test_bad_counts_are_refused(kwargs: dict[str, int], message: str) -> None:
    args = {"xc": 1, "nc": 10, "xt": 1, "nt": 10} | kwargs
    with pytest.raises(ValueError, match=message):
        two_proportion_ztest(args["xc"], args["nc"], args["xt"], args["nt"])


def test_bad_alpha_and_alternative_are_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        two_proportion_ztest(1, 10, 2, 10, alpha=1.5)
    with pytest.raises(ValueError, match="alternative"):
        two_proportion_ztest(1, 10, 2, 10, alternative="bigger")  # type: ignore[arg-type]


def test_estimate_never_has_zero_standard_error() -> None:
    est = proportion_estimate(0, 1000)
    assert est.value == pytest.approx(1 / 1002)
    assert est.se > 0.0


counts = st.integers(min_value=1, max_value=5000).flatmap(
    lambda n: st.tuples(st.integers(0, n), st.just(n))
)


@given(counts, counts, st.sampled_from(["two-sided", "greater", "less"]))
def test_invariants(control: tuple[int, int], treatment: tuple[int, int], alt: Alternative) -> None:
    result = two_proportion_ztest(*control, *treatment, alternative=alt)
    assert 0.0 <= result.p_value <= 1.0
    assert result.interval.contains(result.estimate)
    assert -1.0 <= result.interval.low <= result.interval.high <= 1.0
