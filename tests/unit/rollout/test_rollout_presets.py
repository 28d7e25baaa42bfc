"""Presets: what each named strategy compiles into, and what its steps stand for."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rollout_helpers import (
    BAKE_GATES,
    GATE_VALUES,
    GATES,
    PASSING,
    SKIPPED,
    STEP,
    FakeController,
    kinds,
    make_spec,
    split,
)

from rollwise.analysis.gates import Metric, parse_gates
from rollwise.errors import ConfigError
from rollwise.rollout import (
    Analyze,
    CommandKind,
    Experiment,
    MirrorStep,
    Pause,
    Phase,
    Preview,
    SetWeight,
    Step,
    Switch,
    describe_step,
    linear_weights,
    parse_rollout_spec,
)
from rollwise.rollout.spec import RolloutSpec

# -- linear ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("increment", "weights"),
    [
        pytest.param(30, [30, 60, 90, 100], id="30 lands on 100 after 90"),
        pytest.param(33, [33, 66, 99, 100], id="33 lands on 100 after 99"),
        pytest.param(
            7,
            [7, 14, 21, 28, 35, 42, 49, 56, 63, 70, 77, 84, 91, 98, 100],
            id="7 lands on 100 after 98",
        ),
        pytest.param(99, [99, 100], id="99 lands on 100 after 99"),
        pytest.param(1, [*range(1, 100), 100], id="1 walks every percent to 100"),
        pytest.param(25, [25, 50, 75, 100], id="25 divides 100 and sets 100 once"),
        pytest.param(50, [50, 100], id="50 divides 100"),
        pytest.param(100, [100], id="100 goes to 100 at once"),
    ],
)
def test_linear_weights_end_on_exactly_100(increment: int, weights: list[int]) -> None:
    assert linear_weights(increment) == weights
    spec = make_spec("linear", {"increment": increment, "interval_s": 60})
    assert [s.weight for s in spec.steps if isinstance(s, SetWeight)] == weights


@given(st.integers(min_value=1, max_value=100), st.booleans())
@settings(max_examples=50)
def test_linear_rollout_increases_by_its_increment_and_ends_on_100(
    increment: int, with_gates: bool
) -> None:
    spec = make_spec(
        "linear", {"increment": increment, "interval_s": 30}, gates=GATES if with_gates else None
    )
    weights = [s.weight for s in spec.steps if isinstance(s, SetWeight)]
    assert weights[-1] == 100
    assert spec.steps[-1] == SetWeight(100)
    assert all(a < b for a, b in itertools.pairwise(weights))
    assert all(b - a == increment for a, b in itertools.pairwise(weights[:-1]))
    if len(weights) > 1:
        assert 0 < 100 - weights[-2] <= increment
    else:
        assert increment == 100
    # Every weight below 100 is held for the interval, and judged when there are gates.
    hold: tuple[Step, ...] = (Pause(30.0), Analyze(GATE_VALUES)) if with_gates else (Pause(30.0),)
    for i, step in enumerate(spec.steps[:-1]):
        if isinstance(step, SetWeight):
            assert spec.steps[i + 1 : i + 1 + len(hold)] == hold


# -- canary ----------------------------------------------------------------------------------


def test_canary_with_pause_s_null_holds_each_weight_until_promoted() -> None:
    spec = make_spec("canary", {"weights": [10, 40], "pause_s": None})
    assert spec.steps == (SetWeight(10), Pause(None), SetWeight(40), Pause(None), SetWeight(100))
    run = FakeController(spec)
    assert (run.status.step_index, run.status.weight) == (1, 10)
    for hours in (1, 24, 24 * 365):
        waited = run.tick(PASSING, after=hours * 3600.0)
        assert waited.notes == ()
        assert waited.routing is None
        assert (run.status.phase, run.status.step_index, run.status.weight) == (
            Phase.PROGRESSING,
            1,
            10,
        )
    promoted = run.command(CommandKind.PROMOTE, actor="bob")
    assert kinds(promoted) == (SKIPPED, STEP, STEP)
    assert (run.status.step_index, run.status.weight) == (3, 40)
    assert promoted.routing == split(60, 40)


def test_canary_weights_are_set_in_the_given_order_and_end_on_100() -> None:
    spec = make_spec("canary", {"weights": [1, 2, 3, 99]})
    weights = [s.weight for s in spec.steps if isinstance(s, SetWeight)]
    assert weights == [1, 2, 3, 99, 100]


# -- blue-green ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "steps"),
    [
        pytest.param(
            {},
            (Preview(0), Analyze(parse_gates(BAKE_GATES)), Switch(600.0)),
            id="preview, analyze, switch without a bake",
        ),
        pytest.param(
            {"bake_s": 120, "mirror": 25, "keep_previous_s": 60, "analysis_max_s": 300},
            (Preview(25), Analyze(parse_gates(BAKE_GATES), 300.0), Switch(60.0), Pause(120.0)),
            id="preview with mirroring, analyze, switch, bake",
        ),
        pytest.param(
            {"auto_switch": False, "bake_s": 30},
            (Preview(0), Analyze(parse_gates(BAKE_GATES)), Pause(None), Switch(600.0), Pause(30.0)),
            id="preview, analyze, wait for promote, switch, bake",
        ),
    ],
)
def test_bluegreen_compiles_preview_analyze_switch_bake(
    section: dict[str, Any], steps: tuple[Step, ...]
) -> None:
    assert make_spec("bluegreen", section, gates=BAKE_GATES).steps == steps


def test_a_bluegreen_bake_needs_an_absolute_gate() -> None:
    with pytest.raises(ConfigError, match=r"bluegreen\.bake_s: .*absolute bound"):
        make_spec("bluegreen", {"bake_s": 60}, gates=GATES)


# -- shadow ----------------------------------------------------------------------------------


FOLLOWERS = [
    pytest.param(
        {"strategy": "canary", "canary": {"weights": [10], "pause_s": 5}},
        (SetWeight(10), Pause(5.0), Analyze(GATE_VALUES), SetWeight(100)),
        id="then a canary",
    ),
    pytest.param(
        {"strategy": "linear", "linear": {"increment": 60, "interval_s": 5}},
        (SetWeight(60), Pause(5.0), Analyze(GATE_VALUES), SetWeight(100)),
        id="then a linear rollout",
    ),
    pytest.param(
        {"strategy": "bluegreen", "bluegreen": {}},
        (Preview(0), Analyze(GATE_VALUES), Switch(600.0)),
        id="then blue-green",
    ),
    pytest.param(
        {"strategy": "abtest", "abtest": {"metric": "error_rate", "mde": 0.01}},
        (Experiment(50, Metric.ERROR_RATE, 0.01),),
        id="then an A/B test",
    ),
    pytest.param("validated", (), id="then validated"),
]


@pytest.mark.parametrize(("then", "tail"), FOLLOWERS)
def test_shadow_mirrors_analyzes_and_stops_mirroring_before_the_next_preset(
    then: Any, tail: tuple[Step, ...]
) -> None:
    spec = make_spec("shadow", {"mirror": 40, "then": then}, gates=GATES)
    assert spec.steps == (MirrorStep(40), Analyze(GATE_VALUES), MirrorStep(0), *tail)
    assert spec.promotes is bool(tail)


# -- every preset's steps, written out as custom steps, mean the same --------------------------


PRESETS = [
    pytest.param(make_spec("canary", {"weights": [10, 30]}, gates=GATES), id="canary"),
    pytest.param(make_spec("canary", {"weights": [10], "pause_s": None}), id="canary (promote)"),
    pytest.param(make_spec("linear", {"increment": 33, "interval_s": 9}), id="linear"),
    pytest.param(
        make_spec("bluegreen", {"mirror": 5, "bake_s": 60, "analysis_max_s": 30}, gates=BAKE_GATES),
        id="blue-green",
    ),
    pytest.param(make_spec("shadow", {"max_duration_s": 60}, gates=GATES), id="shadow"),
    pytest.param(
        make_spec(
            "abtest", {"metric": "mae", "mde": 0.5, "baseline": 2, "split": 30, "power": 0.9}
        ),
        id="A/B test",
    ),
]


@pytest.mark.parametrize("spec", PRESETS)
def test_compiled_steps_read_back_as_the_same_custom_steps(spec: RolloutSpec) -> None:
    data = {
        "model": "iris",
        "candidate": "v2",
        "strategy": "steps",
        "steps": [step.to_dict() for step in spec.steps],
    }
    assert parse_rollout_spec(data).steps == spec.steps


@pytest.mark.parametrize(
    ("step", "words"),
    [
        pytest.param(SetWeight(30), "set weight 30 %", id="set weight"),
        pytest.param(MirrorStep(50), "mirror 50 %", id="mirror"),
        pytest.param(MirrorStep(0), "stop mirroring", id="mirror 0 stops mirroring"),
        pytest.param(Pause(None), "pause until promoted", id="pause without a time"),
        pytest.param(Pause(90.0), "pause 90 s", id="pause with a time"),
        pytest.param(Analyze(GATE_VALUES), "analyze 1 gate", id="analyze one gate"),
        pytest.param(Analyze(GATE_VALUES * 2), "analyze 2 gates", id="analyze two gates"),
        pytest.param(
            Experiment(20, Metric.ACCURACY, 0.02), "A/B test on accuracy at 20 %", id="experiment"
        ),
        pytest.param(Preview(0), "preview", id="preview"),
        pytest.param(Preview(10), "preview with 10 % mirrored", id="preview with mirroring"),
        pytest.param(Switch(), "switch all traffic", id="switch"),
    ],
)
def test_each_step_is_described_in_a_few_words(step: Step, words: str) -> None:
    assert describe_step(step) == words
