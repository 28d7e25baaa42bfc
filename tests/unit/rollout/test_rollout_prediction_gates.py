"""Which versions' predictions a rollout judges: refused up front for a ``rest`` version
whose answers rollwise cannot read (no ``output_path``)."""

from __future__ import annotations

from typing import Any

import pytest

from rollwise.analysis.gates import Metric
from rollwise.rollout import parse_rollout_spec
from rollwise.rollout.spec import prediction_metrics

BASE = {"model": "iris", "candidate": "v2"}


def metrics(data: dict[str, Any]) -> tuple[list[str], list[str]]:
    candidate, stable = prediction_metrics(parse_rollout_spec({**BASE, **data}))
    return [m.value for m in candidate], [m.value for m in stable]


@pytest.mark.parametrize(
    ("data", "candidate", "stable"),
    [
        pytest.param(
            {
                "strategy": "canary",
                "canary": {"weights": [10]},
                "gates": [
                    {"metric": "error_rate", "max_increase": 0.01},
                    {"metric": "latency_p99_ms", "max_ratio": 1.2},
                    {"metric": "client_error_rate", "max": 0.1},
                ],
            },
            [],
            [],
            id="answers-only-need-no-predictions",
        ),
        pytest.param(
            {
                "strategy": "canary",
                "canary": {"weights": [10]},
                "gates": [
                    {"metric": "accuracy", "min": 0.9},
                ],
            },
            ["accuracy"],
            [],
            id="an-absolute-accuracy-needs-the-candidates-alone",
        ),
        pytest.param(
            {
                "strategy": "canary",
                "canary": {"weights": [10]},
                "gates": [
                    {"metric": "mae", "max_increase": 0.1},
                ],
            },
            ["mae"],
            ["mae"],
            id="a-relative-bound-needs-both",
        ),
        pytest.param(
            {"strategy": "shadow", "gates": [{"metric": "shadow_agreement", "min": 0.9}]},
            ["shadow_agreement"],
            ["shadow_agreement"],
            id="agreement-compares-both",
        ),
        pytest.param(
            {
                "strategy": "steps",
                "steps": [
                    {"set_weight": 10},
                    {"analyze": {"gates": [{"metric": "drift_psi", "max": 0.2}]}},
                ],
            },
            ["drift_psi"],
            ["drift_psi"],
            id="a-steps-analysis-counts-too",
        ),
        pytest.param(
            {"strategy": "abtest", "abtest": {"metric": "accuracy", "mde": 0.05, "baseline": 0.8}},
            ["accuracy"],
            ["accuracy"],
            id="an-experiment-on-accuracy-compares-both",
        ),
        pytest.param(
            {
                "strategy": "abtest",
                "abtest": {"metric": "error_rate", "mde": 0.05, "baseline": 0.1},
            },
            [],
            [],
            id="an-experiment-on-errors-needs-none",
        ),
    ],
)
def test_the_metrics_a_rollout_reads_from_predictions(
    data: dict[str, Any], candidate: list[str], stable: list[str]
) -> None:
    assert metrics(data) == (candidate, stable)


@pytest.mark.parametrize("metric", list(Metric), ids=lambda m: m.value)
def test_a_metric_reads_predictions_unless_it_is_about_answering(metric: Metric) -> None:
    answering = {
        Metric.ERROR_RATE,
        Metric.CLIENT_ERROR_RATE,
        Metric.LATENCY_P50,
        Metric.LATENCY_P95,
        Metric.LATENCY_P99,
        Metric.LATENCY_MEAN,
        # A rating joins its request by id, whatever the answer: no prediction read.
        Metric.SATISFACTION,
        # LLM figures are measured on the answers as they pass, not read as predictions.
        Metric.TTFT_P50,
        Metric.TTFT_P95,
        Metric.TTFT_P99,
        Metric.TTFT_MEAN,
        Metric.ITL_MEAN,
        Metric.TOKENS_PER_S,
        Metric.COST_PER_REQUEST,
        Metric.FINISH_LENGTH_RATE,
        Metric.FINISH_CONTENT_FILTER_RATE,
        Metric.EMPTY_ANSWER_RATE,
    }
    if metric.external:
        # Read from outside rollwise (prometheus, web): no predictions of its own.
        assert not metric.reads_predictions
        return
    assert metric.reads_predictions is (metric not in answering)
