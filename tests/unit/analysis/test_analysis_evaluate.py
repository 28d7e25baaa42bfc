"""Gate evaluation: pass, fail and inconclusive per metric, with the figures behind them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rollwise.analysis.evaluate import evaluate_gate
from rollwise.analysis.gates import Gate, parse_gate
from rollwise.analysis.summary import ArmSummary
from rollwise.analysis.verdict import Verdict
from rollwise.metrics.histogram import LogHistogram
from rollwise.stats.means import welch_ttest

PASS, FAIL, WAIT = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE


def _errors(n: int, errors: int) -> ArmSummary:
    return ArmSummary(requests=n, errors=errors)


def _latency(seed: int, n: int, scale: float, sigma: float = 0.5) -> ArmSummary:
    rng = np.random.default_rng(seed)
    values = rng.lognormal(math.log(50.0), sigma, n) * scale
    return ArmSummary(
        requests=n, latency=LogHistogram.of(values.tolist()), latency_sum_ms=float(values.sum())
    )


def _feedback(seed: int, n: int, accuracy: float, mae: float) -> ArmSummary:
    rng = np.random.default_rng(seed)
    errors = rng.exponential(mae, n)
    return ArmSummary(
        feedback=n,
        correct=int(rng.binomial(n, accuracy)),
        abs_error_sum=float(errors.sum()),
        sq_error_sum=float((errors**2).sum()),
        quartic_error_sum=float((errors**4).sum()),
        reward_sum=float(-errors.sum()),
        reward_sq_sum=float((errors**2).sum()),
    )


def _gate(**spec: object) -> Gate:
    return parse_gate(spec)


@pytest.mark.parametrize(
    ("spec", "stable", "candidate", "verdict"),
    [
        pytest.param(
            {"metric": "error_rate", "max_increase": 0.005},
            _errors(40_000, 400),
            _errors(40_000, 1200),
            FAIL,
            id="error rate two points up fails",
        ),
        pytest.param(
            {"metric": "error_rate", "max_increase": 0.005},
            _errors(40_000, 400),
            _errors(40_000, 410),
            PASS,
            id="error rate unchanged on plenty of data passes",
        ),
        pytest.param(
            {"metric": "error_rate", "max_increase": 0.005},
            _errors(800, 8),
            _errors(800, 9),
            WAIT,
            id="error rate unchanged on little data is undecided",
        ),
        pytest.param(
            {"metric": "error_rate", "max_increase": 0.005},
            _errors(50, 0),
            _errors(50, 0),
            WAIT,
            id="zero errors below min_samples is never a pass",
        ),
        pytest.param(
            {"metric": "error_rate", "max_increase": 0.005, "min_samples": 10},
            _errors(300, 0),
            _errors(300, 0),
            WAIT,
            id="zero errors in both arms is not yet evidence",
        ),
        pytest.param(
            {"metric": "error_rate", "max": 0.02},
            _errors(10, 0),
            _errors(20_000, 800),
            FAIL,
            id="absolute error rate judged on the candidate alone",
        ),
        pytest.param(
            {"metric": "error_rate", "max_ratio": 1.5},
            _errors(30_000, 300),
            _errors(30_000, 900),
            FAIL,
            id="error rate tripled breaks a ratio bound",
        ),
        pytest.param(
            {"metric": "latency_p99_ms", "max_ratio": 1.10},
            _latency(1, 30_000, 1.0),
            _latency(2, 30_000, 1.3),
            FAIL,
            id="p99 thirty percent slower fails",
        ),
        pytest.param(
            {"metric": "latency_p99_ms", "max_ratio": 1.10},
            _latency(1, 60_000, 1.0),
            _latency(2, 60_000, 1.0),
            PASS,
            id="p99 unchanged passes",
        ),
        pytest.param(
            {"metric": "latency_p99_ms", "max_ratio": 1.10, "min_samples": 10},
            _latency(1, 500, 1.0),
            _latency(2, 500, 1.0),
            WAIT,
            id="p99 needs a thousand latencies",
        ),
        pytest.param(
            {"metric": "latency_p50_ms", "max_increase": 5.0},
            _latency(1, 20_000, 1.0),
            _latency(2, 20_000, 1.3),
            FAIL,
            id="median fifteen milliseconds slower fails",
        ),
        pytest.param(
            {"metric": "latency_mean_ms", "max_ratio": 1.05, "test": "fixed"},
            _latency(1, 20_000, 1.0),
            _latency(2, 20_000, 1.0),
            PASS,
            id="mean latency unchanged passes a fixed test",
        ),
        pytest.param(
            {"metric": "latency_p50_ms", "max_ratio": 1.10, "test": "mann_whitney"},
            _latency(1, 5_000, 1.0),
            _latency(2, 5_000, 1.25),
            FAIL,
            id="rank test sees a twenty-five percent shift",
        ),
        pytest.param(
            {"metric": "latency_p50_ms", "max_ratio": 1.10, "test": "mann_whitney"},
            _latency(1, 5_000, 1.0),
            _latency(2, 5_000, 1.0),
            PASS,
            id="rank test passes equal latencies",
        ),
        pytest.param(
            {"metric": "accuracy", "max_decrease": 0.01, "min_samples": 300},
            _feedback(1, 30_000, 0.90, 1.0),
            _feedback(2, 30_000, 0.85, 1.0),
            FAIL,
            id="accuracy five points down fails",
        ),
        pytest.param(
            {"metric": "accuracy", "max_decrease": 0.01, "min_samples": 300},
            _feedback(1, 200, 0.90, 1.0),
            _feedback(2, 200, 0.60, 1.0),
            WAIT,
            id="accuracy below min_samples waits even when it looks bad",
        ),
        pytest.param(
            {"metric": "mae", "max_increase": 0.05},
            _feedback(1, 20_000, 0.9, 1.0),
            _feedback(2, 20_000, 0.9, 1.2),
            FAIL,
            id="mae up twenty percent fails",
        ),
        pytest.param(
            {"metric": "rmse", "max_ratio": 1.05},
            _feedback(1, 30_000, 0.9, 1.0),
            _feedback(2, 30_000, 0.9, 1.0),
            PASS,
            id="rmse unchanged passes",
        ),
        pytest.param(
            {"metric": "reward", "max_decrease": 0.05},
            _feedback(1, 20_000, 0.9, 1.0),
            _feedback(2, 20_000, 0.9, 1.3),
            FAIL,
            id="reward down fails",
        ),
        pytest.param(
            {"metric": "shadow_agreement", "min": 0.95},
            ArmSummary(),
            ArmSummary(shadow_compared=5000, shadow_agreed=4950),
            PASS,
            id="ninety-nine percent agreement passes",
        ),
        pytest.param(
            {"metric": "shadow_agreement", "min": 0.95},
            ArmSummary(),
            ArmSummary(shadow_compared=5000, shadow_agreed=4500),
            FAIL,
            id="ninety percent agreement fails",
        ),
    ],
)
def test_gate_verdicts(
    spec: dict[str, object], stable: ArmSummary, candidate: ArmSummary, verdict: Verdict
) -> None:
    result = evaluate_gate(_gate(**spec), stable, candidate)
    assert result.verdict is verdict, result.reason
    json.dumps(result.to_dict())


def test_verdict_carries_its_figures() -> None:
    gate = _gate(metric="error_rate", max_increase=0.005)
    result = evaluate_gate(gate, _errors(40_000, 400), _errors(40_000, 1200))
    assert result.n_stable == result.n_candidate == 40_000
    assert result.stable_value == 0.01 and result.candidate_value == 0.03
    assert result.estimate == pytest.approx(0.02, abs=1e-4)
    assert result.interval is not None and result.interval.low > 0.005
    assert result.limit == 0.005
    assert result.p_fail <= gate.alpha < result.p_pass
    assert result.e_value is not None and result.e_value >= 1 / gate.alpha
    assert "breaks the bound" in result.reason


def test_pass_and_fail_agree_with_the_interval() -> None:
    gate = _gate(metric="error_rate", max_increase=0.005)
    for errors in range(300, 1300, 50):
        result = evaluate_gate(gate, _errors(40_000, 400), _errors(40_000, errors))
        assert result.interval is not None
        if result.verdict is FAIL:
            assert result.interval.low > 0.005
        elif result.verdict is PASS:
            assert result.interval.high < 0.005
        else:
            assert result.interval.contains(0.005)


def test_fixed_is_less_conservative_than_sequential_on_the_same_data() -> None:
    stable, candidate = _errors(3000, 30), _errors(3000, 66)
    fixed = evaluate_gate(
        _gate(metric="error_rate", max_increase=0.003, test="fixed"), stable, candidate
    )
    seq = evaluate_gate(_gate(metric="error_rate", max_increase=0.003), stable, candidate)
    assert fixed.p_fail < seq.p_fail
    assert fixed.interval is not None and seq.interval is not None
    assert seq.interval.width > fixed.interval.width


def test_fixed_mean_gate_is_welch() -> None:
    stable, candidate = _feedback(1, 500, 0.9, 1.0), _feedback(2, 400, 0.9, 1.1)
    result = evaluate_gate(_gate(metric="mae", max_increase=0.05, test="fixed"), stable, candidate)

    def stats(arm: ArmSummary) -> tuple[int, float, float]:
        n = arm.feedback
        mean = arm.abs_error_sum / n
        return n, mean, (arm.sq_error_sum - n * mean**2) / (n - 1)

    ref = welch_ttest(*stats(stable), *stats(candidate), null_diff=0.05, alternative="greater")
    assert result.p_fail == pytest.approx(ref.p_value, abs=1e-9)
    assert result.method == "fixed-horizon Welch t"


def test_rmse_without_fourth_powers_is_inconclusive_with_a_reason() -> None:
    arm = ArmSummary(feedback=1000, sq_error_sum=900.0)
    result = evaluate_gate(_gate(metric="rmse", max_ratio=1.1), arm, arm)
    assert result.verdict is WAIT
    assert "fourth powers" in result.reason


def test_ratio_of_zero_is_inconclusive() -> None:
    arm = ArmSummary(feedback=500, reward_sum=0.0, abs_error_sum=0.0, sq_error_sum=0.0)
    result = evaluate_gate(_gate(metric="mae", max_ratio=1.1), arm, arm)
    assert result.verdict is WAIT
    assert "positive" in result.reason


@pytest.mark.parametrize(
    ("stable_outputs", "candidate_outputs", "spec", "verdict"),
    [
        pytest.param(
            {"cat": 6000, "dog": 4000},
            {"cat": 5950, "dog": 4050},
            {"metric": "drift_psi", "max": 0.1},
            PASS,
            id="labels barely moved",
        ),
        pytest.param(
            {"cat": 6000, "dog": 4000},
            {"cat": 2000, "dog": 8000},
            {"metric": "drift_psi", "max": 0.1},
            FAIL,
            id="labels flipped",
        ),
        pytest.param(
            {"cat": 30, "dog": 20},
            {"cat": 31, "dog": 19},
            {"metric": "drift_psi", "max": 0.1},
            WAIT,
            id="too few outputs",
        ),
        pytest.param(
            {"cat": 600, "dog": 400},
            {"cat": 610, "dog": 390},
            {"metric": "drift_ks", "max": 0.1},
            WAIT,
            id="KS needs numeric outputs",
        ),
    ],
)
def test_drift_on_labels(
    stable_outputs: dict[str, int],
    candidate_outputs: dict[str, int],
    spec: dict[str, object],
    verdict: Verdict,
) -> None:
    result = evaluate_gate(
        _gate(**spec), ArmSummary(outputs=stable_outputs), ArmSummary(outputs=candidate_outputs)
    )
    assert result.verdict is verdict, result.reason


def test_drift_on_numeric_outputs() -> None:
    rng = np.random.default_rng(4)
    same = ArmSummary(outputs=LogHistogram.of(rng.lognormal(1, 1, 20_000).tolist()))
    also_same = ArmSummary(outputs=LogHistogram.of(rng.lognormal(1, 1, 20_000).tolist()))
    shifted = ArmSummary(outputs=LogHistogram.of(rng.lognormal(1.5, 1, 20_000).tolist()))
    ks = _gate(metric="drift_ks", max=0.1)
    assert evaluate_gate(ks, same, also_same).verdict is PASS
    failed = evaluate_gate(ks, same, shifted)
    assert failed.verdict is FAIL
    assert failed.estimate == pytest.approx(0.197, abs=0.02)
    assert evaluate_gate(_gate(metric="drift_psi", max=0.1), same, shifted).verdict is FAIL
    mixed = evaluate_gate(ks, same, ArmSummary(outputs={"a": 20_000}))
    assert mixed.verdict is WAIT and "labels" in mixed.reason


def test_sequential_gate_keeps_its_false_failure_rate_under_peeking() -> None:
    # A/A canary at 10 % weight, judged after every batch of traffic.
    rng = np.random.default_rng(31)
    gate = _gate(metric="error_rate", max_increase=0.0)
    replicates, looks, failures = 300, 15, 0
    for _ in range(replicates):
        errs_s = np.cumsum(rng.binomial(900, 0.02, looks))
        errs_c = np.cumsum(rng.binomial(100, 0.02, looks))
        for k in range(looks):
            result = evaluate_gate(
                gate,
                _errors(900 * (k + 1), int(errs_s[k])),
                _errors(100 * (k + 1), int(errs_c[k])),
            )
            if result.verdict is FAIL:
                failures += 1
                break
    rate = failures / replicates
    assert rate <= gate.alpha + 2.5 * math.sqrt(gate.alpha * (1 - gate.alpha) / replicates)
