"""The step judge: SRM blocks passes, corrections guard failures, waiting is never a pass."""

from __future__ import annotations

import dataclasses
import json

import pytest

from rollwise.analysis.gates import Gate, parse_gate, parse_gates
from rollwise.analysis.judge import Verdict, check_srm, judge, judge_step
from rollwise.analysis.summary import ArmSummary
from rollwise.analysis.verdict import GateResult
from rollwise.stats.srm import srm_chisquare

ERROR_GATE = parse_gate({"metric": "error_rate", "max_increase": 0.005})


def _result(
    verdict: Verdict,
    p_fail: float = 0.5,
    p_pass: float = 0.5,
    *,
    enough: bool = True,
    gate: Gate = ERROR_GATE,
) -> GateResult:
    return GateResult(
        gate=gate,
        verdict=verdict,
        reason=f"{verdict.value} on purpose",
        p_fail=p_fail,
        p_pass=p_pass,
        enough_data=enough,
    )


@pytest.mark.parametrize(
    ("results", "verdict"),
    [
        pytest.param([_result(Verdict.PASS, 0.9, 0.001)] * 3, Verdict.PASS, id="all pass"),
        pytest.param(
            [_result(Verdict.PASS, 0.9, 0.001), _result(Verdict.FAIL, 0.0001, 1.0)],
            Verdict.FAIL,
            id="one clear failure fails",
        ),
        pytest.param(
            [_result(Verdict.PASS, 0.9, 0.001), _result(Verdict.INCONCLUSIVE, enough=False)],
            Verdict.INCONCLUSIVE,
            id="a gate short of data keeps the step waiting",
        ),
        pytest.param([], Verdict.INCONCLUSIVE, id="no gates is never a pass"),
    ],
)
def test_combination_rule(results: list[GateResult], verdict: Verdict) -> None:
    assert judge(results).verdict is verdict


def test_marginal_failure_among_several_gates_is_corrected_away() -> None:
    marginal = _result(Verdict.FAIL, p_fail=0.03, p_pass=1.0)
    others = [_result(Verdict.INCONCLUSIVE, p_fail=0.6) for _ in range(3)]
    holm = judge([marginal, *others])
    assert holm.verdict is Verdict.INCONCLUSIVE
    assert holm.gates[0].p_fail_adjusted == pytest.approx(0.12)
    assert "holm correction" in holm.gates[0].reason
    assert judge([marginal, *others], correction="none").verdict is Verdict.FAIL
    assert judge([marginal], correction="holm").verdict is Verdict.FAIL


def test_gates_without_data_do_not_dilute_the_correction() -> None:
    marginal = _result(Verdict.FAIL, p_fail=0.03, p_pass=1.0)
    waiting = [_result(Verdict.INCONCLUSIVE, p_fail=1.0, enough=False) for _ in range(5)]
    assert judge([marginal, *waiting]).verdict is Verdict.FAIL


def test_failed_srm_blocks_a_pass() -> None:
    srm = srm_chisquare([6000, 4000], [50, 50])
    judged = judge([_result(Verdict.PASS, 0.9, 0.001)], srm=srm)
    assert judged.verdict is Verdict.FAIL
    assert "sample ratio mismatch" in judged.reason
    fine = srm_chisquare([5010, 4990], [50, 50])
    assert judge([_result(Verdict.PASS, 0.9, 0.001)], srm=fine).verdict is Verdict.PASS


def test_judgement_serialises_to_json() -> None:
    judged = judge([_result(Verdict.PASS, 0.9, 0.001)], srm=srm_chisquare([50, 50], [50, 50]))
    data = json.loads(json.dumps(judged.to_dict()))
    assert data["verdict"] == "pass"
    assert data["gates"][0]["gate"] == "error_rate.max_increase"
    assert data["srm"]["mismatch"] is False


def _arm(requests: int, errors: int) -> ArmSummary:
    return ArmSummary(requests=requests, errors=errors)


def test_judge_step_end_to_end() -> None:
    gates = parse_gates(
        [
            {"metric": "error_rate", "max_increase": 0.005},
            {"metric": "error_rate", "max": 0.05},
        ]
    )
    good = judge_step(gates, _arm(90_000, 900), _arm(10_000, 95), weights_percent=(90, 10))
    assert good.verdict is Verdict.PASS, good.reason
    assert good.srm is not None and not good.srm.mismatch
    bad = judge_step(gates, _arm(90_000, 900), _arm(10_000, 400), weights_percent=(90, 10))
    assert bad.verdict is Verdict.FAIL
    assert [g.gate.describe() for g in bad.failed] == ["error_rate at most 0.005 above stable"]
    skewed = judge_step(gates, _arm(90_000, 900), _arm(7_000, 70), weights_percent=(90, 10))
    assert skewed.verdict is Verdict.FAIL and "sample ratio" in skewed.reason
    no_split = judge_step(gates, _arm(90_000, 900), _arm(7_000, 70), weights_percent=(0, 100))
    assert no_split.srm is None


def test_check_srm_counts_served_requests() -> None:
    result = check_srm(_arm(900, 0), _arm(100, 0), (90, 10), sequential=False)
    assert result.observed == (900, 100)
    assert result.p_value == pytest.approx(1.0)


def test_results_are_frozen_values() -> None:
    judged = judge([_result(Verdict.PASS, 0.9, 0.001)])
    with pytest.raises(dataclasses.FrozenInstanceError):
        judged.verdict = Verdict.FAIL  # type: ignore[misc]
