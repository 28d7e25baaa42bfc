"""Gate specs: parsing from plain dicts, refusals that name the key and value."""

from __future__ import annotations

from typing import Any

import pytest

from rollwise.analysis.gates import Bound, Gate, Method, Metric, parse_gate, parse_gates
from rollwise.errors import ConfigError


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            {"metric": "error_rate", "max_increase": 0.005},
            Gate(Metric.ERROR_RATE, Bound.MAX_INCREASE, 0.005),
            id="error rate relative to stable",
        ),
        pytest.param(
            {"metric": "latency_p99_ms", "max_ratio": 1.10},
            Gate(Metric.LATENCY_P99, Bound.MAX_RATIO, 1.10),
            id="p99 ratio",
        ),
        pytest.param(
            {"metric": "accuracy", "max_decrease": 0.01, "min_samples": 300},
            Gate(Metric.ACCURACY, Bound.MAX_DECREASE, 0.01, min_samples=300),
            id="accuracy from feedback with a minimum sample",
        ),
        pytest.param(
            {"metric": "error_rate", "max": 0.02},
            Gate(Metric.ERROR_RATE, Bound.MAX, 0.02),
            id="absolute error rate",
        ),
        pytest.param(
            {"metric": "shadow_agreement", "min": 0.95},
            Gate(Metric.SHADOW_AGREEMENT, Bound.MIN, 0.95),
            id="shadow agreement",
        ),
        pytest.param(
            {"metric": "drift_ks", "max": 0.1, "test": "fixed", "alpha": 0.01},
            Gate(Metric.DRIFT_KS, Bound.MAX, 0.1, method=Method.FIXED, alpha=0.01),
            id="drift with a fixed test and its own alpha",
        ),
        pytest.param(
            {"metric": "latency_p50_ms", "max_ratio": 1.2, "test": "mann_whitney"},
            Gate(Metric.LATENCY_P50, Bound.MAX_RATIO, 1.2, method=Method.MANN_WHITNEY),
            id="latency by rank test",
        ),
        pytest.param(
            {"metric": "reward", "max_decrease": 0.1, "horizon": 5000},
            Gate(Metric.REWARD, Bound.MAX_DECREASE, 0.1, horizon=5000.0),
            id="reward with a tuned horizon",
        ),
    ],
)
def test_parse_gate(spec: dict[str, Any], expected: Gate) -> None:
    gate = parse_gate(spec)
    assert gate == expected
    assert parse_gate(gate.to_dict()) == gate


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        pytest.param({"max": 0.1}, ["missing key 'metric'"], id="no metric"),
        pytest.param(
            {"metric": "errors", "max": 0.1}, ["metric 'errors'", "error_rate"], id="unknown metric"
        ),
        pytest.param({"metric": "error_rate"}, ["exactly one bound", "none"], id="no bound"),
        pytest.param(
            {"metric": "error_rate", "max": 0.1, "max_increase": 0.01},
            ["exactly one bound", "max, max_increase"],
            id="two bounds",
        ),
        pytest.param(
            {"metric": "error_rate", "max_increase": "lots"},
            ["max_increase", "'lots'"],
            id="bound not a number",
        ),
        pytest.param(
            {"metric": "error_rate", "max_increase": 0.01, "min_sample": 5},
            ["unknown key 'min_sample'"],
            id="misspelled key",
        ),
        pytest.param(
            {"metric": "accuracy", "max_increase": 0.01},
            ["'max_increase'", "accuracy", "higher"],
            id="bound in the wrong direction",
        ),
        pytest.param(
            {"metric": "shadow_agreement", "max_decrease": 0.01},
            ["absolute bound", "'max_decrease'"],
            id="relative bound on a single-figure metric",
        ),
        pytest.param(
            {"metric": "reward", "min_ratio": 0.9}, ["reward can be negative"], id="ratio on reward"
        ),
        pytest.param(
            {"metric": "latency_p99_ms", "max_ratio": 0},
            ["max_ratio must be > 0", "0"],
            id="zero ratio",
        ),
        pytest.param(
            {"metric": "error_rate", "max": 1.5}, ["max", "[0, 1]", "1.5"], id="rate above one"
        ),
        pytest.param(
            {"metric": "error_rate", "max_increase": 0.01, "test": "mann_whitney"},
            ["mann_whitney", "latency"],
            id="rank test on a rate",
        ),
        pytest.param(
            {"metric": "error_rate", "max_increase": 0.01, "test": "bootstrap"},
            ["test 'bootstrap'"],
            id="unknown test",
        ),
        pytest.param(
            {"metric": "error_rate", "max_increase": 0.01, "min_samples": 0},
            ["min_samples must be >= 1", "0"],
            id="zero minimum sample",
        ),
        pytest.param(
            {"metric": "error_rate", "max_increase": 0.01, "min_samples": 2.5},
            ["min_samples must be an integer", "2.5"],
            id="fractional minimum sample",
        ),
        pytest.param(
            {"metric": "error_rate", "max_increase": 0.01, "alpha": 0.7},
            ["alpha", "0.7"],
            id="alpha too large",
        ),
        pytest.param(
            {"metric": "drift_ks", "max": 2}, ["drift_ks", "(0, 1)"], id="KS distance above one"
        ),
        pytest.param(
            {"metric": "error_rate", "max_increase": float("nan")}, ["finite"], id="nan bound"
        ),
        pytest.param(
            {"metric": "error_rate", "max_increase": True}, ["must be a number"], id="boolean bound"
        ),
    ],
)
def test_bad_specs_name_the_key_and_value(spec: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_gate(spec, where="gates[2]")
    message = str(info.value)
    assert message.startswith("gates[2]: ")
    for fragment in fragments:
        assert fragment in message


def test_parse_gates_names_the_entry() -> None:
    gates = parse_gates([{"metric": "error_rate", "max_increase": 0.005}])
    assert gates == (Gate(Metric.ERROR_RATE, Bound.MAX_INCREASE, 0.005),)
    with pytest.raises(ConfigError, match=r"^gates\[1\]: "):
        parse_gates([{"metric": "error_rate", "max": 0.1}, {"metric": "nope", "max": 1}])
    with pytest.raises(ConfigError, match="list of gates"):
        parse_gates("error_rate")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="mapping"):
        parse_gates([["error_rate"]])  # type: ignore[list-item]


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ConfigError, match=r"^gate: "):
        Gate(Metric.ACCURACY, Bound.MAX_INCREASE, 0.01)


def test_descriptions_and_names() -> None:
    gate = parse_gate({"metric": "latency_p99_ms", "max_ratio": 1.1})
    assert gate.describe() == "latency_p99_ms at most 1.1 times stable"
    assert gate.name == "latency_p99_ms.max_ratio"
    assert Metric.LATENCY_P99.quantile == 0.99
    assert Metric.ACCURACY.higher_is_better and not Metric.MAE.higher_is_better
