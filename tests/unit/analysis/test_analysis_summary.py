"""ArmSummary: validation, derived figures, merging and serialisation."""

from __future__ import annotations

import json
import math

import pytest

from rollwise.analysis.summary import ArmSummary
from rollwise.metrics.histogram import LogHistogram


def _arm(**kwargs: object) -> ArmSummary:
    base: dict[str, object] = {
        "requests": 100,
        "errors": 3,
        "latency": LogHistogram.of([10.0, 20.0, 30.0]),
        "latency_sum_ms": 60.0,
        "feedback": 10,
        "correct": 9,
        "abs_error_sum": 5.0,
        "sq_error_sum": 4.0,
        "quartic_error_sum": 3.0,
        "reward_sum": 2.0,
        "reward_sq_sum": 1.0,
        "outputs": {"cat": 6, "dog": 4},
        "shadow_compared": 50,
        "shadow_agreed": 48,
    }
    base.update(kwargs)
    return ArmSummary(**base)  # type: ignore[arg-type]


def test_derived_figures() -> None:
    arm = _arm()
    assert arm.error_rate == 0.03
    assert arm.accuracy == 0.9
    assert arm.mae == 0.5
    assert arm.rmse == pytest.approx(math.sqrt(0.4))
    assert arm.reward_mean == 0.2
    assert arm.latency_mean_ms == 20.0
    assert arm.shadow_agreement == 0.96
    assert arm.output_count == 10
    assert math.isnan(ArmSummary().error_rate)


def test_merge_adds_everything() -> None:
    merged = _arm().merge(_arm(outputs={"dog": 1, "eel": 2}))
    assert merged.requests == 200 and merged.errors == 6
    assert merged.latency.count == 6
    assert merged.outputs == {"cat": 6, "dog": 5, "eel": 2}
    assert merged.quartic_error_sum == 6.0
    numeric = _arm(outputs=LogHistogram.of([1.0])).merge(_arm(outputs=LogHistogram.of([2.0])))
    assert isinstance(numeric.outputs, LogHistogram) and numeric.outputs.count == 2
    assert _arm(outputs=None).merge(_arm()).outputs == {"cat": 6, "dog": 4}
    with pytest.raises(ValueError, match="cannot merge"):
        _arm().merge(_arm(outputs=LogHistogram.of([1.0])))


@pytest.mark.parametrize(
    "outputs",
    [
        pytest.param({"cat": 6, "dog": 4}, id="labels"),
        pytest.param(LogHistogram.of([0.5, 3.0]), id="numeric"),
        pytest.param(None, id="none"),
    ],
)
def test_dict_round_trip_through_json(outputs: object) -> None:
    arm = _arm(outputs=outputs)
    again = ArmSummary.from_dict(json.loads(json.dumps(arm.to_dict())))
    assert again == arm


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"errors": 101}, "exceed", id="more errors than requests"),
        pytest.param({"correct": 11}, "exceeds feedback", id="more correct than feedback"),
        pytest.param({"shadow_agreed": 51}, "exceeds shadow_compared", id="agreement overflow"),
        pytest.param({"requests": -1}, ">= 0", id="negative count"),
    ],
)
def test_inconsistent_summaries_are_refused(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _arm(**kwargs)


def test_unknown_field_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown summary field 'reqs'"):
        ArmSummary.from_dict({"reqs": 1})
