"""Rollout specs: every strategy parses into its steps; a bad spec is refused, naming the
key and the value."""

from __future__ import annotations

from typing import Any

import pytest
from rollout_helpers import BAKE_GATES, GATE_VALUES, GATES, raw_spec

from rollwise.analysis.gates import Metric, parse_gates
from rollwise.errors import ConfigError
from rollwise.rollout import (
    Analyze,
    Experiment,
    MirrorStep,
    OnInconclusive,
    Pause,
    Preview,
    RollbackPolicy,
    SetWeight,
    Step,
    Strategy,
    Switch,
    parse_rollout_spec,
)

AGREEMENT = [{"metric": "shadow_agreement", "min": 0.9}]
AGREEMENT_VALUES = parse_gates(AGREEMENT)


# -- valid specs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "strategy", "steps", "promotes"),
    [
        pytest.param(
            raw_spec("canary", {"weights": [10, 30, 50], "pause_s": 60}, gates=GATES),
            Strategy.CANARY,
            (
                SetWeight(10),
                Pause(60.0),
                Analyze(GATE_VALUES),
                SetWeight(30),
                Pause(60.0),
                Analyze(GATE_VALUES),
                SetWeight(50),
                Pause(60.0),
                Analyze(GATE_VALUES),
                SetWeight(100),
            ),
            True,
            id="a canary with gates holds, judges and raises each weight, then goes to 100",
        ),
        pytest.param(
            raw_spec("canary", {"weights": [5, 25]}),
            Strategy.CANARY,
            (SetWeight(5), Pause(60.0), SetWeight(25), Pause(60.0), SetWeight(100)),
            True,
            id="a canary without gates or pause_s holds each weight for the default 60 s",
        ),
        pytest.param(
            raw_spec("canary", {"weights": [20, 100], "pause_s": 30}),
            Strategy.CANARY,
            (SetWeight(20), Pause(30.0), SetWeight(100)),
            True,
            id="a canary whose weights end on 100 sets 100 once",
        ),
        pytest.param(
            raw_spec("canary", {"weights": [10, 50], "pause_s": 0}),
            Strategy.CANARY,
            (SetWeight(10), SetWeight(50), SetWeight(100)),
            True,
            id="a canary with pause_s 0 and no gates does not hold its weights",
        ),
        pytest.param(
            raw_spec("linear", {"increment": 25, "interval_s": 120}, gates=GATES),
            Strategy.LINEAR,
            (
                SetWeight(25),
                Pause(120.0),
                Analyze(GATE_VALUES),
                SetWeight(50),
                Pause(120.0),
                Analyze(GATE_VALUES),
                SetWeight(75),
                Pause(120.0),
                Analyze(GATE_VALUES),
                SetWeight(100),
            ),
            True,
            id="linear raises by the increment every interval until 100",
        ),
        pytest.param(
            raw_spec("bluegreen", {"mirror": 10, "bake_s": 300}, gates=BAKE_GATES),
            Strategy.BLUEGREEN,
            (Preview(10), Analyze(parse_gates(BAKE_GATES)), Switch(600.0), Pause(300.0)),
            True,
            id="blue-green previews, analyzes, switches and bakes",
        ),
        pytest.param(
            raw_spec(
                "bluegreen",
                {"auto_switch": False, "keep_previous_s": 120, "analysis_max_s": 900},
                gates=GATES,
            ),
            Strategy.BLUEGREEN,
            (Preview(0), Analyze(GATE_VALUES, 900.0), Pause(None), Switch(120.0)),
            True,
            id="blue-green without auto_switch waits for promote before the switch",
        ),
        pytest.param(
            raw_spec("bluegreen", {"auto_switch": False}),
            Strategy.BLUEGREEN,
            (Preview(0), Pause(None), Switch(600.0)),
            True,
            id="blue-green without gates needs auto_switch false and switches on promote",
        ),
        pytest.param(
            raw_spec("shadow", {"then": "validated"}, gates=AGREEMENT),
            Strategy.SHADOW,
            (MirrorStep(100), Analyze(AGREEMENT_VALUES), MirrorStep(0)),
            False,
            id="a shadow mirrors everything, analyzes, stops mirroring and is validated",
        ),
        pytest.param(
            raw_spec("shadow", {"mirror": 30, "max_duration_s": 600}, gates=AGREEMENT),
            Strategy.SHADOW,
            (MirrorStep(30), Analyze(AGREEMENT_VALUES, 600.0), MirrorStep(0)),
            False,
            id="a shadow without then is validated; its analysis has its own time limit",
        ),
        pytest.param(
            raw_spec(
                "shadow",
                {"then": {"strategy": "canary", "canary": {"weights": [20], "pause_s": 30}}},
                gates=GATES,
            ),
            Strategy.SHADOW,
            (
                MirrorStep(100),
                Analyze(GATE_VALUES),
                MirrorStep(0),
                SetWeight(20),
                Pause(30.0),
                Analyze(GATE_VALUES),
                SetWeight(100),
            ),
            True,
            id="a shadow goes on into a canary with the same gates",
        ),
        pytest.param(
            raw_spec(
                "shadow",
                {"then": {"strategy": "linear", "linear": {"increment": 50, "interval_s": 10}}},
                gates=GATES,
            ),
            Strategy.SHADOW,
            (
                MirrorStep(100),
                Analyze(GATE_VALUES),
                MirrorStep(0),
                SetWeight(50),
                Pause(10.0),
                Analyze(GATE_VALUES),
                SetWeight(100),
            ),
            True,
            id="a shadow goes on into a linear rollout",
        ),
        pytest.param(
            raw_spec(
                "shadow",
                {"then": {"strategy": "abtest", "abtest": {"metric": "accuracy", "mde": 0.02}}},
                gates=GATES,
            ),
            Strategy.SHADOW,
            (
                MirrorStep(100),
                Analyze(GATE_VALUES),
                MirrorStep(0),
                Experiment(50, Metric.ACCURACY, 0.02),
            ),
            True,
            id="a shadow goes on into an A/B test",
        ),
        pytest.param(
            raw_spec("abtest", {"metric": "accuracy", "mde": 0.02}),
            Strategy.ABTEST,
            (Experiment(50, Metric.ACCURACY, 0.02),),
            True,
            id="an A/B test on a rate with the defaults",
        ),
        pytest.param(
            raw_spec(
                "abtest",
                {
                    "metric": "latency_mean_ms",
                    "mde": 5,
                    "baseline": 20,
                    "split": 10,
                    "alpha": 0.01,
                    "power": 0.9,
                    "max_duration_s": 7200,
                    "min_samples": 500,
                },
            ),
            Strategy.ABTEST,
            (Experiment(10, Metric.LATENCY_MEAN, 5.0, 0.01, 0.9, 20.0, 7200.0, 500),),
            True,
            id="an A/B test on a mean with every option",
        ),
        pytest.param(
            raw_spec(
                "steps",
                [
                    {"mirror": 50},
                    {"analyze": {"gates": AGREEMENT, "max_duration_s": 60}},
                    {"set_weight": 5},
                    {"pause": 30},
                    {"pause": {}},
                    {"pause": {"duration_s": 45}},
                    {"analyze": None},
                    {"preview": {"mirror": 5}},
                    {"switch": {"keep_previous_s": 30}},
                    {"experiment": {"metric": "error_rate", "mde": 0.01, "split": 20}},
                ],
                gates=GATES,
            ),
            Strategy.STEPS,
            (
                MirrorStep(50),
                Analyze(AGREEMENT_VALUES, 60.0),
                SetWeight(5),
                Pause(30.0),
                Pause(None),
                Pause(45.0),
                Analyze(GATE_VALUES),
                Preview(5),
                Switch(30.0),
                Experiment(20, Metric.ERROR_RATE, 0.01),
            ),
            True,
            id="custom steps of every kind, an analyze taking the top-level gates",
        ),
        pytest.param(
            raw_spec("steps", [{"mirror": 20}, {"pause": 60}, {"mirror": 0}]),
            Strategy.STEPS,
            (MirrorStep(20), Pause(60.0), MirrorStep(0)),
            False,
            id="custom steps that never give the candidate traffic do not promote it",
        ),
    ],
)
def test_valid_spec_compiles_into_its_steps(
    data: dict[str, Any], strategy: Strategy, steps: tuple[Step, ...], promotes: bool
) -> None:
    spec = parse_rollout_spec(data)
    assert spec.model == "iris"
    assert spec.candidate == "v2"
    assert spec.strategy is strategy
    assert spec.steps == steps
    assert spec.promotes is promotes
    assert spec.to_dict() == data


def test_spec_keeps_its_gates_rollback_policy_and_description() -> None:
    data = raw_spec(
        "canary",
        {"weights": [10]},
        gates=GATES,
        rollback={"failure_limit": 3, "on_inconclusive": "pause", "on_inconclusive_after_s": 60},
    )
    data["description"] = "v2 retrained on March data"
    spec = parse_rollout_spec(data)
    assert spec.gates == GATE_VALUES
    assert spec.rollback == RollbackPolicy(3, OnInconclusive.PAUSE, 60.0)
    assert spec.rollback.to_dict() == {
        "failure_limit": 3,
        "on_inconclusive": "pause",
        "on_inconclusive_after_s": 60.0,
    }
    assert spec.summary() == "canary of iris to v2"


def test_rollback_policy_defaults_to_one_failure_and_rolling_back_after_900_s() -> None:
    spec = parse_rollout_spec(raw_spec("canary", {"weights": [10]}))
    assert spec.gates == ()
    assert spec.rollback == RollbackPolicy(1, OnInconclusive.ROLLBACK, 900.0)


def test_spec_as_written_is_not_changed_by_parsing() -> None:
    data = raw_spec("canary", {"weights": [10, 30]}, gates=GATES)
    before = repr(data)
    parse_rollout_spec(data)
    assert repr(data) == before


# -- bad specs -----------------------------------------------------------------------------


def _without(key: str) -> dict[str, Any]:
    data = raw_spec("canary", {"weights": [10]})
    del data[key]
    return data


def _with(key: str, value: Any) -> dict[str, Any]:
    data = raw_spec("canary", {"weights": [10]})
    data[key] = value
    return data


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        pytest.param(["model", "iris"], ["must be a mapping"], id="a list instead of a mapping"),
        pytest.param(_without("model"), ["'model'"], id="missing model"),
        pytest.param(_without("candidate"), ["'candidate'"], id="missing candidate"),
        pytest.param(_without("strategy"), ["'strategy'"], id="missing strategy"),
        pytest.param(_with("model", ""), ["model", "''"], id="an empty model name"),
        pytest.param(_with("candidate", 2), ["candidate", "2"], id="a candidate that is a number"),
        pytest.param(
            raw_spec("rainbow"), ["strategy", "'rainbow'"], id="an unknown strategy is refused"
        ),
        pytest.param(
            _with("colour", "red"), ["unknown key", "'colour'"], id="an unknown top-level key"
        ),
        pytest.param(
            _with("linear", {"increment": 10, "interval_s": 60}),
            ["'linear'", "section of strategy linear"],
            id="the section of another strategy",
        ),
        pytest.param(
            _with("description", 42), ["description", "42"], id="a description that is not text"
        ),
        pytest.param(
            raw_spec("canary"), ["canary", "'weights'"], id="a canary without its weights"
        ),
        pytest.param(
            raw_spec("canary", {"weights": [50, 30]}),
            ["weights", "must increase", "30", "50"],
            id="canary weights that go down",
        ),
        pytest.param(
            raw_spec("canary", {"weights": [10, 10]}),
            ["weights", "must increase", "10"],
            id="canary weights that repeat",
        ),
        pytest.param(
            raw_spec("canary", {"weights": [10, 101]}),
            ["weights[1]", "101"],
            id="a canary weight above 100",
        ),
        pytest.param(
            raw_spec("canary", {"weights": [0, 10]}),
            ["weights[0]", "0"],
            id="a canary weight of 0",
        ),
        pytest.param(
            raw_spec("canary", {"weights": [10, 12.5]}),
            ["weights[1]", "12.5"],
            id="a canary weight that is not whole",
        ),
        pytest.param(
            raw_spec("canary", {"weights": "10,30"}),
            ["weights", "'10,30'"],
            id="canary weights as text instead of a list",
        ),
        pytest.param(
            raw_spec("canary", {"weights": 10}),
            ["weights", "10"],
            id="canary weights as a number instead of a list",
        ),
        pytest.param(
            raw_spec("canary", {"weights": []}),
            ["weights", "[]"],
            id="an empty canary weight list",
        ),
        pytest.param(
            raw_spec("canary", {"weights": [10], "pause_s": -1}),
            ["pause_s", "-1"],
            id="a negative canary pause",
        ),
        pytest.param(
            raw_spec("canary", {"weights": [10], "hold_s": 5}),
            ["unknown key", "'hold_s'"],
            id="an unknown key in the canary section",
        ),
        pytest.param(
            raw_spec("linear", {"increment": 0, "interval_s": 60}),
            ["increment", "0"],
            id="a linear increment of 0",
        ),
        pytest.param(
            raw_spec("linear", {"increment": 101, "interval_s": 60}),
            ["increment", "101"],
            id="a linear increment of 101",
        ),
        pytest.param(
            raw_spec("linear", {"increment": 10, "interval_s": 0}),
            ["interval_s", "0"],
            id="a linear interval of 0 s",
        ),
        pytest.param(
            raw_spec("linear", {"increment": 10, "interval_s": -30}),
            ["interval_s", "-30"],
            id="a negative linear interval",
        ),
        pytest.param(
            raw_spec("linear", {"increment": 10}),
            ["'interval_s'"],
            id="a linear rollout without its interval",
        ),
        pytest.param(
            raw_spec("bluegreen", {"auto_switch": True}),
            ["auto_switch", "gates"],
            id="blue-green with auto_switch and no gates to analyze the preview",
        ),
        pytest.param(
            raw_spec("bluegreen", {}),
            ["auto_switch", "gates"],
            id="blue-green switching automatically by default with no gates",
        ),
        pytest.param(
            raw_spec("bluegreen", {"auto_switch": "yes"}, gates=GATES),
            ["auto_switch", "'yes'"],
            id="a blue-green auto_switch that is not true or false",
        ),
        pytest.param(
            raw_spec("shadow", {"then": "validated"}),
            ["shadow", "gates"],
            id="a shadow without gates",
        ),
        pytest.param(
            raw_spec("shadow", {"mirror": 0}, gates=AGREEMENT),
            ["mirror", "0"],
            id="a shadow that mirrors nothing",
        ),
        pytest.param(
            raw_spec("shadow", {"then": "promoted"}, gates=AGREEMENT),
            ["then", "'promoted'"],
            id="a shadow then that is neither validated nor a mapping",
        ),
        pytest.param(
            raw_spec("shadow", {"then": {"strategy": "shadow"}}, gates=AGREEMENT),
            ["then", "'shadow'"],
            id="a shadow going on into another shadow",
        ),
        pytest.param(
            raw_spec(
                "shadow",
                {"then": {"strategy": "canary", "canary": {"weights": [10]}, "linear": {}}},
                gates=AGREEMENT,
            ),
            ["then", "'linear'"],
            id="a shadow then with the section of another strategy",
        ),
        pytest.param(
            raw_spec("abtest", {"metric": "latency_p99_ms", "mde": 5}),
            ["metric", "'latency_p99_ms'"],
            id="an A/B test on a metric experiments cannot compare",
        ),
        pytest.param(
            raw_spec("abtest", {"metric": "happiness", "mde": 5}),
            ["metric", "'happiness'"],
            id="an A/B test on an unknown metric",
        ),
        pytest.param(
            raw_spec("abtest", {"metric": "accuracy", "mde": 0}),
            ["mde", "0"],
            id="an A/B test with mde 0",
        ),
        pytest.param(
            raw_spec("abtest", {"metric": "accuracy", "mde": -0.01}),
            ["mde", "-0.01"],
            id="an A/B test with a negative mde",
        ),
        pytest.param(
            raw_spec("abtest", {"metric": "accuracy"}),
            ["'mde'"],
            id="an A/B test without mde",
        ),
        pytest.param(
            raw_spec("abtest", {"metric": "accuracy", "mde": 0.02, "split": 100}),
            ["split", "100"],
            id="an A/B test with a split of 100",
        ),
        pytest.param(
            raw_spec("abtest", {"metric": "accuracy", "mde": 0.02, "split": 0}),
            ["split", "0"],
            id="an A/B test with a split of 0",
        ),
        pytest.param(
            raw_spec("abtest", {"metric": "mae", "mde": 0.1}),
            ["baseline", "mae"],
            id="an A/B test of a mean without a baseline",
        ),
        pytest.param(
            raw_spec("abtest", {"metric": "accuracy", "mde": 0.02, "baseline": 1.5}),
            ["baseline", "1.5"],
            id="an A/B test of a rate with a baseline above 1",
        ),
        pytest.param(
            raw_spec("abtest", {"metric": "accuracy", "mde": 0.02, "alpha": 0.7}),
            ["alpha", "0.7"],
            id="an A/B test with alpha 0.7",
        ),
        pytest.param(
            raw_spec("abtest", {"metric": "accuracy", "mde": 0.02, "min_samples": 0}),
            ["min_samples", "0"],
            id="an A/B test with min_samples 0",
        ),
        pytest.param(
            raw_spec("abtest", {"metric": "accuracy", "mde": 0.02, "max_duration_s": 0}),
            ["max_duration_s", "0"],
            id="an A/B test with a maximum duration of 0 s",
        ),
        pytest.param(
            raw_spec("shadow", {"max_duration_s": 0}, gates=AGREEMENT),
            ["max_duration_s", "0"],
            id="a shadow analysis with a maximum duration of 0 s",
        ),
        pytest.param(raw_spec("steps"), ["steps", "missing"], id="strategy steps without steps"),
        pytest.param(raw_spec("steps", []), ["steps", "[]"], id="an empty step list"),
        pytest.param(
            raw_spec("steps", [{"jump": 5}]),
            ["steps[0]", "'jump'"],
            id="a step of an unknown kind",
        ),
        pytest.param(
            raw_spec("steps", [{"set_weight": 10}, {"set_weight": 20, "pause": {}}]),
            ["steps[1]", "'set_weight'", "'pause'"],
            id="a step with two kinds",
        ),
        pytest.param(
            raw_spec("steps", [{"set_weight": 150}]),
            ["steps[0].set_weight", "150"],
            id="a step setting a weight above 100",
        ),
        pytest.param(
            raw_spec("steps", [{"mirror": -5}]),
            ["steps[0].mirror", "-5"],
            id="a step mirroring a negative percent",
        ),
        pytest.param(
            raw_spec("steps", [{"pause": {"duration_s": 5, "until": "monday"}}]),
            ["steps[0].pause", "'until'"],
            id="a pause step with an unknown key",
        ),
        pytest.param(
            raw_spec("steps", [{"pause": -5}]),
            ["steps[0].pause", "-5"],
            id="a pause step of negative seconds",
        ),
        pytest.param(
            raw_spec("steps", [{"set_weight": 10}, {"analyze": {}}]),
            ["steps[1].analyze", "gates"],
            id="an analyze step with no gates anywhere",
        ),
        pytest.param(
            raw_spec("steps", [{"switch": {"keep_s": 5}}]),
            ["steps[0].switch", "'keep_s'"],
            id="a switch step with an unknown key",
        ),
        pytest.param(
            raw_spec("steps", [{"experiment": {"metric": "accuracy", "mde": 0}}]),
            ["steps[0].experiment.mde", "0"],
            id="an experiment step with mde 0",
        ),
        pytest.param(
            raw_spec("canary", {"weights": [10]}, gates=[{"metric": "speed", "max": 1}]),
            ["gates[0]", "'speed'"],
            id="a gate on an unknown metric",
        ),
        pytest.param(
            raw_spec(
                "canary",
                {"weights": [10]},
                gates=[*GATES, {"metric": "accuracy", "max_increase": 0.1}],
            ),
            ["gates[1]", "'max_increase'", "'accuracy'"],
            id="a gate whose bound does not fit its metric",
        ),
        pytest.param(
            raw_spec(
                "canary",
                {"weights": [10]},
                gates=[{"metric": "error_rate", "max_increase": 0.01, "colour": "red"}],
            ),
            ["gates[0]", "'colour'"],
            id="a gate with an unknown key",
        ),
        pytest.param(
            _with("gates", {"metric": "error_rate", "max": 0.1}),
            ["gates", "must be a list"],
            id="gates as a mapping instead of a list",
        ),
        pytest.param(
            raw_spec("canary", {"weights": [10]}, rollback={"failure_limit": 0}),
            ["failure_limit", "0"],
            id="a rollback failure limit of 0",
        ),
        pytest.param(
            raw_spec("canary", {"weights": [10]}, rollback={"failure_limit": 1.5}),
            ["failure_limit", "1.5"],
            id="a rollback failure limit that is not whole",
        ),
        pytest.param(
            raw_spec("canary", {"weights": [10]}, rollback={"on_inconclusive": "maybe"}),
            ["on_inconclusive", "'maybe'"],
            id="on_inconclusive maybe",
        ),
        pytest.param(
            raw_spec("canary", {"weights": [10]}, rollback={"on_inconclusive_after_s": 0}),
            ["on_inconclusive_after_s", "0"],
            id="giving up on an analysis after 0 s",
        ),
        pytest.param(
            raw_spec("canary", {"weights": [10]}, rollback={"retries": 3}),
            ["rollback", "'retries'"],
            id="an unknown key in the rollback policy",
        ),
    ],
)
def test_bad_spec_is_refused_naming_the_key_and_the_value(data: Any, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_rollout_spec(data)
    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_an_agreement_only_analysis_where_nothing_is_mirrored_is_refused() -> None:
    spec = raw_spec("steps", [{"set_weight": 10}, {"analyze": {"gates": AGREEMENT}}], gates=GATES)
    with pytest.raises(ConfigError, match=r"steps\[1\]\.analyze: shadow agreement is measured"):
        parse_rollout_spec(spec)
