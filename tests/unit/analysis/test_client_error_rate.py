"""The client error rate: a share of requests, judged like the error rate, apart from it.

A refusal of bad input is the caller's error and no failure of the
version, but a candidate that refuses what the stable version accepts must still be
caught, by a gate on ``client_error_rate`` relative to stable.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest

from rollwise.analysis.evaluate import evaluate_gate
from rollwise.analysis.gates import Bound, Gate, Metric, parse_gate
from rollwise.analysis.summary import ArmSummary
from rollwise.analysis.verdict import Verdict
from rollwise.errors import ConfigError

PASS, FAIL, WAIT = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE


def arm(requests: int, client_errors: int, errors: int = 0) -> ArmSummary:
    return ArmSummary(requests=requests, errors=errors, client_errors=client_errors)


def test_the_rate_is_a_share_of_every_request_and_no_error() -> None:
    summary = arm(200, 30, errors=10)
    assert summary.client_error_rate == 0.15
    assert summary.error_rate == 0.05
    assert math.isnan(ArmSummary().client_error_rate)


def test_client_errors_merge_and_survive_json() -> None:
    merged = arm(100, 5).merge(arm(50, 7))
    assert (merged.requests, merged.client_errors) == (150, 12)
    again = ArmSummary.from_dict(json.loads(json.dumps(merged.to_dict())))
    assert again == merged
    assert ArmSummary.from_dict({"requests": 3}).client_errors == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param(
            {"requests": 10, "errors": 4, "client_errors": 7},
            "together exceed requests 10",
            id="errors and client errors beyond the requests",
        ),
        pytest.param({"requests": 10, "client_errors": -1}, "client_errors must be >= 0", id="neg"),
    ],
)
def test_inconsistent_client_errors_are_refused(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ArmSummary(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "bound", "threshold"),
    [
        pytest.param({"max_increase": 0.01}, Bound.MAX_INCREASE, 0.01, id="relative increase"),
        pytest.param({"max_ratio": 1.5}, Bound.MAX_RATIO, 1.5, id="relative ratio"),
        pytest.param({"max": 0.2}, Bound.MAX, 0.2, id="absolute share"),
    ],
)
def test_gates_on_the_client_error_rate_parse_like_the_error_rate(
    spec: dict[str, Any], bound: Bound, threshold: float
) -> None:
    gate = parse_gate({"metric": "client_error_rate", **spec})
    assert gate == Gate(Metric.CLIENT_ERROR_RATE, bound, threshold)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        pytest.param({"min": 0.1}, "lower is better", id="a lower bound is the likely mistake"),
        pytest.param({"max_decrease": 0.1}, "lower is better", id="so is a decrease"),
        pytest.param({"max": 1.5}, "share in [0, 1]", id="an absolute bound is a share"),
    ],
)
def test_bad_client_error_rate_gates_are_refused(spec: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        parse_gate({"metric": "client_error_rate", **spec})


@pytest.mark.parametrize(
    ("spec", "stable", "candidate", "verdict"),
    [
        pytest.param(
            {"max_increase": 0.01},
            arm(20_000, 200),
            arm(20_000, 1_000),
            FAIL,
            id="a candidate refusing what the stable accepts fails",
        ),
        pytest.param(
            {"max_increase": 0.01},
            arm(20_000, 2_000),
            arm(20_000, 2_010),
            PASS,
            id="refusing the same bad requests as the stable passes",
        ),
        pytest.param(
            {"max_increase": 0.01},
            arm(60, 0),
            arm(60, 30),
            WAIT,
            id="below min_samples it is never judged",
        ),
        pytest.param(
            {"max_ratio": 1.5},
            arm(20_000, 400),
            arm(20_000, 1_200),
            FAIL,
            id="three times the stable's refusals break a ratio of 1.5",
        ),
        pytest.param(
            {"max": 0.05},
            arm(0, 0),
            arm(20_000, 2_000),
            FAIL,
            id="an absolute bound judges the candidate alone",
        ),
    ],
)
def test_client_error_rate_verdicts(
    spec: dict[str, Any], stable: ArmSummary, candidate: ArmSummary, verdict: Verdict
) -> None:
    result = evaluate_gate(parse_gate({"metric": "client_error_rate", **spec}), stable, candidate)
    assert result.verdict is verdict, result.reason


def test_refusals_leave_the_error_rate_gate_alone() -> None:
    stable, candidate = arm(20_000, 200, errors=100), arm(20_000, 4_000, errors=100)
    errors = evaluate_gate(
        parse_gate({"metric": "error_rate", "max_increase": 0.005}), stable, candidate
    )
    refusals = evaluate_gate(
        parse_gate({"metric": "client_error_rate", "max_increase": 0.01}), stable, candidate
    )
    assert (errors.verdict, refusals.verdict) == (PASS, FAIL)
    assert refusals.candidate_value == 0.2 and refusals.stable_value == 0.01
