"""Gates on LLM metrics: parsed like the others, judged by the same statistics (TTFT
quantiles as latency quantiles, rates as the error rate, means as MAE)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rollwise.analysis.evaluate import evaluate_gate
from rollwise.analysis.gates import parse_gate
from rollwise.analysis.summary import ArmSummary
from rollwise.analysis.verdict import Verdict
from rollwise.errors import ConfigError
from rollwise.metrics.histogram import LogHistogram

PASS, FAIL, WAIT = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE


def ttft_arm(seed: int, n: int, scale: float) -> ArmSummary:
    values = np.random.default_rng(seed).lognormal(math.log(80.0), 0.3, n) * scale
    return ArmSummary(
        llm_answers=n, ttft=LogHistogram.of(values.tolist()), ttft_sum_ms=float(values.sum())
    )


def cost_arm(seed: int, n: int, mean: float) -> ArmSummary:
    costs = np.random.default_rng(seed).gamma(4.0, mean / 4.0, n)
    return ArmSummary(
        llm_answers=n, cost_sum=float(costs.sum()), cost_sq_sum=float((costs**2).sum())
    )


def length_arm(n: int, cut: int) -> ArmSummary:
    return ArmSummary(llm_answers=n, finish_length=cut)


@pytest.mark.parametrize(
    ("gate", "stable", "candidate", "verdict"),
    [
        pytest.param(
            {"metric": "ttft_p95_ms", "max_ratio": 1.2},
            ttft_arm(1, 3000, 1.0),
            ttft_arm(2, 3000, 1.6),
            FAIL,
            id="a-candidate-whose-first-token-comes-60-percent-later-fails-a-20-percent-bound",
        ),
        pytest.param(
            {"metric": "ttft_p95_ms", "max_ratio": 1.2},
            ttft_arm(3, 3000, 1.0),
            ttft_arm(4, 3000, 1.0),
            PASS,
            id="an-equally-fast-candidate-passes",
        ),
        pytest.param(
            {"metric": "ttft_p95_ms", "max_ratio": 1.2},
            ttft_arm(5, 50, 1.0),
            ttft_arm(6, 50, 3.0),
            WAIT,
            id="too-few-first-tokens-for-a-p95-wait",
        ),
        pytest.param(
            {"metric": "ttft_mean_ms", "max_ratio": 1.2},
            ttft_arm(7, 2000, 1.0),
            ttft_arm(8, 2000, 1.5),
            FAIL,
            id="the-mean-ttft-is-judged-too",
        ),
        pytest.param(
            {"metric": "cost_per_request", "max_ratio": 1.1},
            cost_arm(9, 2000, 0.010),
            cost_arm(10, 2000, 0.013),
            FAIL,
            id="a-candidate-30-percent-dearer-fails-a-10-percent-bound",
        ),
        pytest.param(
            {"metric": "cost_per_request", "max_ratio": 1.1},
            cost_arm(11, 2000, 0.010),
            cost_arm(12, 2000, 0.0095),
            PASS,
            id="a-cheaper-candidate-passes",
        ),
        pytest.param(
            {"metric": "finish_length_rate", "max_increase": 0.02},
            length_arm(4000, 40),
            length_arm(4000, 400),
            FAIL,
            id="a-candidate-cut-by-max-tokens-ten-times-as-often-fails",
        ),
        pytest.param(
            {"metric": "finish_length_rate", "max_increase": 0.02},
            length_arm(4000, 40),
            length_arm(4000, 44),
            PASS,
            id="the-same-length-cut-rate-passes",
        ),
        pytest.param(
            {"metric": "empty_answer_rate", "max": 0.05},
            ArmSummary(),
            ArmSummary(llm_answers=0),
            WAIT,
            id="no-llm-answers-is-inconclusive-never-a-pass",
        ),
    ],
)
def test_llm_gates_are_judged_like_their_kin(
    gate: dict[str, object], stable: ArmSummary, candidate: ArmSummary, verdict: Verdict
) -> None:
    result = evaluate_gate(parse_gate(gate), stable, candidate)
    assert result.verdict is verdict, result.reason


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        pytest.param(
            {"metric": "tokens_per_s", "max_ratio": 1.1},
            "higher is better",
            id="tokens-per-second-is-higher-is-better",
        ),
        pytest.param(
            {"metric": "finish_length_rate", "max": 2},
            "share in [0, 1]",
            id="a-rate-bound-is-a-share",
        ),
        pytest.param(
            {"metric": "ttft_p95_ms", "max_ratio": 1.2, "test": "mann_whitney"},
            "latency metrics",
            id="mann-whitney-stays-with-request-latency",
        ),
    ],
)
def test_bad_llm_gates_are_refused_naming_the_problem(
    gate: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_gate(gate, where="gates[0]")


def test_llm_summaries_merge_and_round_trip() -> None:
    a, b = ttft_arm(1, 100, 1.0), cost_arm(2, 50, 0.01)
    merged = a.merge(b)
    assert merged.llm_answers == 150
    assert merged.ttft.count == 100
    assert ArmSummary.from_dict(merged.to_dict()) == merged
