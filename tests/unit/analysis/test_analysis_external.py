"""The verdict of an external gate from one reading, and how it joins the statistical ones."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollwise.analysis.external import Reading, evaluate_external
from rollwise.analysis.gates import Bound, Gate, parse_gate
from rollwise.analysis.judge import judge_step
from rollwise.analysis.summary import ArmSummary
from rollwise.analysis.verdict import Verdict

QUERY = 'x{version="{{version}}"}'
PASS, FAIL, UNDECIDED = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE


def prom(**bound: Any) -> Gate:
    return parse_gate({"metric": "prometheus", "query": QUERY, **bound})


def web(**bound: Any) -> Gate:
    return parse_gate({"metric": "web", "url": "http://x", **bound})


CASES = [
    # gate, reading, (n_stable, n_candidate), verdict, words in the reason
    (prom(max=0.1), Reading(0.05), (0, 10), PASS, "within the bound: 0.05", "below max passes"),
    (prom(max=0.1), Reading(0.1), (0, 10), PASS, "within", "exactly on the bound passes"),
    (prom(max=0.1), Reading(0.2), (0, 10), FAIL, "breaks the bound: 0.2", "above max fails"),
    (prom(min=2), Reading(1.5), (0, 10), FAIL, "breaks", "below min fails"),
    (prom(min=2), Reading(3.0), (0, 10), PASS, "within", "above min passes"),
    (prom(max_increase=0.01), Reading(0.05, 0.045), (9, 9), PASS, "0.005", "small increase"),
    (prom(max_increase=0.01), Reading(0.07, 0.045), (9, 9), FAIL, "0.025", "large increase"),
    (prom(max_decrease=0.1), Reading(0.7, 0.75), (9, 9), PASS, "0.05", "small decrease"),
    (prom(max_decrease=0.1), Reading(0.5, 0.75), (9, 9), FAIL, "0.25", "large decrease"),
    (prom(max_ratio=1.2), Reading(110.0, 100.0), (9, 9), PASS, "1.1", "ratio below max"),
    (prom(max_ratio=1.2), Reading(130.0, 100.0), (9, 9), FAIL, "1.3", "ratio above max"),
    (prom(min_ratio=0.9), Reading(80.0, 100.0), (9, 9), FAIL, "0.8", "ratio below min"),
    (prom(max_ratio=1.2), Reading(1.0, 0.0), (9, 9), UNDECIDED, "positive stable", "stable 0"),
    (
        prom(max_ratio=1.2),
        Reading(1.0),
        (9, 9),
        UNDECIDED,
        "no reading for the stable",
        "no stable",
    ),
    (prom(max=1), None, (9, 9), UNDECIDED, "no reading yet", "nothing read"),
    (prom(max=1), Reading(problem="no answer within 5 s"), (9, 9), UNDECIDED, "5 s", "timeout"),
    (prom(max=1, min_samples=100), Reading(0.5), (0, 99), UNDECIDED, "99 requests", "too few"),
    (prom(max=1, min_samples=100), Reading(0.5), (0, 100), PASS, "within", "just enough"),
    (prom(max=1, min_samples=100), Reading(5.0), (0, 3), FAIL, "breaks", "a breach needs no n"),
    (
        prom(max_increase=1, min_samples=50),
        Reading(0.5, 0.5),
        (49, 500),
        UNDECIDED,
        "each version needs 50",
        "relative: the stable arm counts too",
    ),
    (web(), Reading(True), (0, 0), PASS, "answered true", "true passes"),
    (web(), Reading(False), (0, 0), FAIL, "answered false", "false fails"),
    (web(), Reading(1.0), (0, 0), PASS, "within", "a number 1 counts as true"),
    (web(), Reading(0.0), (0, 0), FAIL, "breaks", "a number 0 counts as false"),
    (web(max=0.3), Reading(True), (0, 0), PASS, "answered true", "true passes any bound"),
    (web(max=0.3), Reading(0.4), (0, 0), FAIL, "breaks", "a number against max"),
    (web(min_samples=10), Reading(True), (0, 9), UNDECIDED, "9 requests", "true, too few"),
    (web(), Reading(problem="answered 503"), (0, 9), UNDECIDED, "503", "an error status"),
]


@pytest.mark.parametrize(
    ("gate", "reading", "counts", "verdict", "words"),
    [pytest.param(*case[:5], id=case[5]) for case in CASES],
)
def test_external_verdict(
    gate: Gate, reading: Reading | None, counts: tuple[int, int], verdict: Verdict, words: str
) -> None:
    result = evaluate_external(gate, reading, *counts)

    assert result.verdict is verdict, result.reason
    assert words in result.reason
    assert result.reason.startswith(gate.describe())
    assert not result.enough_data  # kept out of the multiple-testing correction


readings = st.one_of(
    st.none(),
    st.builds(Reading, problem=st.text(min_size=1, max_size=20)),
    st.builds(
        Reading,
        candidate=st.one_of(st.booleans(), st.floats(-1e6, 1e6), st.none()),
        stable=st.one_of(st.none(), st.floats(-1e6, 1e6)),
    ),
)
bounds = st.sampled_from([b.value for b in Bound])


@given(
    bound=bounds,
    threshold=st.floats(0.01, 100),
    reading=readings,
    n=st.tuples(st.integers(0, 500), st.integers(0, 500)),
    min_samples=st.integers(0, 200),
)
def test_no_reading_problem_ever_passes_and_passes_need_their_samples(
    bound: str, threshold: float, reading: Reading | None, n: tuple[int, int], min_samples: int
) -> None:
    gate = prom(**{bound: threshold, "min_samples": min_samples})

    result = evaluate_external(gate, reading, *n)

    if reading is None or reading.problem or reading.candidate is None:
        assert result.verdict is UNDECIDED
    if result.verdict is PASS:
        smallest = min(n) if gate.bound.relative else n[1]
        assert smallest >= min_samples
    assert (result.verdict is FAIL) == (result.p_fail == 0.0)


@given(value=st.floats(-1e6, 1e6), threshold=st.floats(-1e3, 1e3))
def test_an_absolute_max_fails_exactly_above_its_threshold(value: float, threshold: float) -> None:
    result = evaluate_external(prom(max=threshold), Reading(value), 0, 0)

    assert (result.verdict is FAIL) == (value > threshold)
    assert result.verdict in (PASS, FAIL)


def test_external_results_join_the_step_judgement() -> None:
    arm = ArmSummary(requests=500, errors=0)
    breach = prom(max=0.1)
    fine = web()

    failing = judge_step(
        [breach, fine], arm, arm, readings={breach: Reading(0.5), fine: Reading(True)}
    )
    passing = judge_step(
        [breach, fine], arm, arm, readings={breach: Reading(0.05), fine: Reading(True)}
    )
    unread = judge_step([breach, fine], arm, arm)

    assert failing.verdict is FAIL and "prometheus" in failing.reason
    assert passing.verdict is PASS
    assert unread.verdict is UNDECIDED and "no reading yet" in unread.reason


def test_an_external_failure_survives_the_correction_of_many_gates() -> None:
    arm = ArmSummary(requests=50, errors=0)
    breach = prom(max=0.1)
    gates = [breach, *[parse_gate({"metric": "error_rate", "max": 0.5}) for _ in range(1)]]

    judgement = judge_step(gates, arm, arm, readings={breach: Reading(0.9)})

    assert judgement.verdict is FAIL
    assert judgement.gates[0].p_fail_adjusted is None
