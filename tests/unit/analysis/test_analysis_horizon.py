"""How much longer an undecided gate needs: samples still missing and the time they take."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollwise.analysis.experiment import ExperimentDecision, Outcome
from rollwise.analysis.gates import Bound, Gate, Metric
from rollwise.analysis.horizon import (
    Horizon,
    experiment_horizon,
    gate_horizon,
    judgement_figures,
    observed_rate,
)
from rollwise.analysis.judge import judge_step
from rollwise.analysis.summary import ArmSummary
from rollwise.analysis.verdict import GateResult, Verdict
from rollwise.stats.results import Interval

ERRORS = Gate(Metric.ERROR_RATE, Bound.MAX_INCREASE, 0.005, min_samples=300)
ABSOLUTE = Gate(Metric.ERROR_RATE, Bound.MAX, 0.02)
P99 = Gate(Metric.LATENCY_P99, Bound.MAX_RATIO, 1.1)
DRIFT = Gate(Metric.DRIFT_PSI, Bound.MAX, 0.2)


def short(gate: Gate, n_stable: int, n_candidate: int, reason: str = "") -> GateResult:
    return GateResult(
        gate,
        Verdict.INCONCLUSIVE,
        reason or "not enough data",
        n_stable=n_stable,
        n_candidate=n_candidate,
    )


def undecided(
    gate: Gate, estimate: float, low: float, high: float, n: int, limit: float | None = None
) -> GateResult:
    return GateResult(
        gate,
        Verdict.INCONCLUSIVE,
        "undecided: the interval straddles the bound",
        estimate=estimate,
        interval=Interval(low, high, 0.9),
        limit=gate.threshold if limit is None else limit,
        n_stable=9 * n,
        n_candidate=n,
        enough_data=True,
    )


def needed(n: int, half: float, distance: float) -> int:
    """The n at which a half-width ``half`` at ``n``, shrinking as 1/√n, is ``distance``."""
    return math.ceil(n * (half / distance) ** 2) - n


@pytest.mark.parametrize(
    ("result", "more", "at_least"),
    [
        pytest.param(short(ERRORS, 2700, 120), 180, True, id="short of min_samples: the rest"),
        pytest.param(short(ABSOLUTE, 0, 40), 60, True, id="an absolute bound counts the candidate"),
        pytest.param(short(P99, 5000, 500), 500, True, id="p99 needs 10 beyond it: 1000"),
        pytest.param(short(DRIFT, 80, 900), 20, True, id="drift counts both versions' outputs"),
        pytest.param(
            undecided(ERRORS, 0.001, -0.004, 0.006, 1000),
            needed(1000, 0.005, 0.004),
            False,
            id="undecided on the good side: until the upper end clears the bound",
        ),
        pytest.param(
            undecided(ERRORS, 0.007, 0.003, 0.011, 1000),
            needed(1000, 0.004, 0.002),
            False,
            id="undecided on the bad side: until the lower end clears the bound",
        ),
        pytest.param(
            undecided(P99, 1.05, 0.95, 1.16, 400),
            needed(400, math.log(1.16 / 1.05), math.log(1.1 / 1.05)),
            False,
            id="a ratio is judged on the log scale",
        ),
    ],
)
def test_more_samples_needed(result: GateResult, more: int, at_least: bool) -> None:
    horizon = gate_horizon(result, rate_per_s=2.0)
    assert horizon is not None
    assert (horizon.more, horizon.at_least) == (more, at_least)
    assert horizon.expected_s == pytest.approx(more / 2.0)
    assert horizon.to_dict()["more"] == more


@pytest.mark.parametrize(
    "result",
    [
        pytest.param(undecided(ERRORS, 0.005, 0.0, 0.01, 1000), id="the estimate on the bound"),
        pytest.param(
            short(DRIFT, 500, 500, "no output distribution recorded"),
            id="short of data that more samples do not bring",
        ),
    ],
)
def test_cannot_tell(result: GateResult) -> None:
    horizon = gate_horizon(result, rate_per_s=2.0)
    assert horizon is not None
    assert (horizon.more, horizon.expected_s) == (None, None)
    assert horizon.why


@pytest.mark.parametrize("verdict", [Verdict.PASS, Verdict.FAIL])
def test_a_decided_gate_has_no_horizon(verdict: Verdict) -> None:
    decided = GateResult(ERRORS, verdict, "decided", n_stable=900, n_candidate=100)
    assert gate_horizon(decided, rate_per_s=1.0) is None


@pytest.mark.parametrize(
    ("rate", "elapsed_s", "expected"),
    [
        pytest.param(None, 0.0, None, id="no rate"),
        pytest.param(0.0, 10.0, None, id="no samples arrive"),
    ],
)
def test_without_a_rate_there_is_no_expected_time(
    rate: float | None, elapsed_s: float, expected: float | None
) -> None:
    horizon = gate_horizon(short(ERRORS, 900, 100), rate_per_s=rate)
    assert horizon == Horizon(more=200, at_least=True, expected_s=expected, rate_per_s=rate)


@pytest.mark.parametrize(
    ("result", "elapsed_s", "rate"),
    [
        pytest.param(short(ERRORS, 900, 100), 50.0, 2.0, id="the smaller arm's samples per second"),
        pytest.param(short(ABSOLUTE, 0, 30), 10.0, 3.0, id="the candidate's alone"),
        pytest.param(short(ERRORS, 900, 100), 0.0, None, id="no time elapsed: no rate"),
    ],
)
def test_observed_rate(result: GateResult, elapsed_s: float, rate: float | None) -> None:
    assert observed_rate(result, elapsed_s) == rate


@given(
    n=st.integers(10, 100_000),
    half=st.floats(1e-4, 1.0),
    share=st.floats(0.01, 0.99),
)
def test_the_interval_just_clears_the_bound_at_the_predicted_size(
    n: int, half: float, share: float
) -> None:
    # The estimate sits a share of the half-width away from the bound: undecided now.
    limit = 0.5
    estimate = limit - share * half
    result = undecided(
        Gate(Metric.ERROR_RATE, Bound.MAX, limit), estimate, estimate - half, estimate + half, n
    )
    horizon = gate_horizon(result, rate_per_s=1.0)
    assert horizon is not None and horizon.more is not None
    total = n + horizon.more
    assert estimate + half * math.sqrt(n / total) <= limit + 1e-12
    assert total == n or estimate + half * math.sqrt(n / (total - 1)) > limit - 1e-12


def test_a_judgement_keeps_each_undecided_gate_s_horizon_beside_its_figures() -> None:
    stable, candidate = ArmSummary(900, errors=9), ArmSummary(100, errors=1)
    judgement = judge_step((ERRORS, ABSOLUTE), stable, candidate, weights_percent=(90, 10))
    figures = judgement_figures(judgement, elapsed_s=50.0)
    assert figures["verdict"] == "inconclusive"
    first, second = figures["gates"]
    assert first["horizon"] == {
        "more": 200,
        "at_least": True,
        "expected_s": pytest.approx(100.0),
        "rate_per_s": 2.0,
        "why": "",
    }
    assert second["verdict"] in ("pass", "inconclusive")
    assert ("horizon" in second) is (second["verdict"] == "inconclusive")


@pytest.mark.parametrize(
    ("decision", "elapsed_s", "horizon"),
    [
        pytest.param(
            ExperimentDecision(Outcome.CONTINUE, "undecided", n_stable=600, n_candidate=400),
            100.0,
            Horizon(600, expected_s=150.0, rate_per_s=4.0),
            id="the smaller arm to the planned size, at its rate",
        ),
        pytest.param(
            ExperimentDecision(Outcome.CONTINUE, "collecting", n_stable=0, n_candidate=0),
            100.0,
            Horizon(1000, expected_s=None, rate_per_s=0.0),
            id="nothing arrived yet",
        ),
        pytest.param(
            ExperimentDecision(Outcome.NO_DIFFERENCE, "done", n_stable=1000, n_candidate=1000),
            100.0,
            None,
            id="a decided test needs nothing more",
        ),
    ],
)
def test_an_ab_test_s_horizon_is_its_planned_size(
    decision: ExperimentDecision, elapsed_s: float, horizon: Horizon | None
) -> None:
    assert experiment_horizon(decision, 1000, elapsed_s) == horizon
