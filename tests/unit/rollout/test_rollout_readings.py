"""External gates in a rollout: which are read at a tick, with what context, whether a
spec can be read at all, and how readings move the state machine."""

from __future__ import annotations

from typing import Any

import pytest
from rollout_helpers import FakeController, make_spec, raw_spec

from rollwise.analysis.external import Reading
from rollwise.analysis.gates import Metric
from rollwise.domain import Role
from rollwise.errors import ConfigError
from rollwise.metrics.recorder import VersionWindow
from rollwise.rollout import (
    Analyze,
    CommandKind,
    Phase,
    RolloutSpec,
    gather,
    parse_rollout_spec,
)
from rollwise.rollout.readings import check_sources, gate_context, gates_to_read

PROM = {"metric": "prometheus", "query": "sum(x)", "max": 0.1, "address": "http://p:9090"}
WEB = {"metric": "web", "url": "http://checks/ok"}
ERRORS = {"metric": "error_rate", "max_increase": 0.005}
WINDOWS = {
    ("v1", Role.SERVED): VersionWindow(requests=900, errors=0),
    ("v2", Role.SERVED): VersionWindow(requests=100, errors=0),
}


def _names(spec: RolloutSpec, run: FakeController) -> list[str]:
    return [g.metric.value for g in gates_to_read(spec, run.status)]


def test_only_external_gates_are_read_and_only_while_the_candidate_has_traffic() -> None:
    spec = make_spec("canary", {"weights": [10], "pause_s": 60}, gates=[ERRORS, PROM, WEB])
    run = FakeController(spec)

    assert _names(spec, run) == ["prometheus", "web"]

    run.command(CommandKind.ABORT)
    assert run.status.phase is Phase.ROLLED_BACK
    assert gates_to_read(spec, run.status) == ()


def test_an_analyze_step_adds_its_own_external_gates() -> None:
    raw = raw_spec(
        "steps",
        [{"set_weight": 20}, {"analyze": {"gates": [WEB]}}, {"set_weight": 100}],
        gates=[PROM],
    )
    spec = parse_rollout_spec(raw)
    run = FakeController(spec)

    assert isinstance(run.step, Analyze)
    assert _names(spec, run) == ["prometheus", "web"]


def test_a_preview_without_traffic_reads_nothing() -> None:
    raw = raw_spec("steps", [{"pause": {}}, {"set_weight": 100}], gates=[PROM])
    spec = parse_rollout_spec(raw)

    assert gates_to_read(spec, FakeController(spec).status) == ()


def test_the_context_counts_steps_from_one_and_the_window_from_the_step() -> None:
    spec = make_spec("canary", {"weights": [10], "pause_s": 60}, gates=[PROM])
    run = FakeController(spec)

    context = gate_context(spec, run.status, run.status.measure_since_s + 41.5)

    assert (context.model, context.stable, context.candidate) == ("iris", "v1", "v2")
    assert context.phase == "progressing"
    assert context.step == 2 and context.steps == len(spec.steps)
    assert context.window_s == 42
    assert context.values("v1")["window"] == "42s"


NO_ADDRESS = {k: v for k, v in PROM.items() if k != "address"}


@pytest.mark.parametrize(
    ("raw", "configured", "refused"),
    [
        pytest.param(
            raw_spec("canary", {"weights": [10]}, gates=[PROM]), False, False, id="own address"
        ),
        pytest.param(
            raw_spec("canary", {"weights": [10]}, gates=[NO_ADDRESS]), True, False, id="config url"
        ),
        pytest.param(
            raw_spec("canary", {"weights": [10]}, gates=[NO_ADDRESS]), False, True, id="no server"
        ),
        pytest.param(
            raw_spec(
                "steps",
                [{"set_weight": 20}, {"analyze": {"gates": [NO_ADDRESS]}}, {"set_weight": 100}],
                gates=[WEB],
            ),
            False,
            True,
            id="an analyze step's gate without a server",
        ),
        pytest.param(
            raw_spec("canary", {"weights": [10]}, gates=[WEB, ERRORS]), False, False, id="none"
        ),
    ],
)
def test_a_prometheus_gate_needs_a_server_to_ask(
    raw: dict[str, Any], configured: bool, refused: bool
) -> None:
    spec = parse_rollout_spec(raw)

    if refused:
        with pytest.raises(ConfigError, match="no Prometheus server to ask") as error:
            check_sources(spec, prometheus_configured=configured)
        assert "providers.prometheus.url" in str(error.value)
    else:
        check_sources(spec, prometheus_configured=configured)


def test_breached_readings_roll_back_after_the_failure_limit() -> None:
    spec = make_spec(
        "canary", {"weights": [10], "pause_s": 60}, gates=[PROM], rollback={"failure_limit": 2}
    )
    run = FakeController(spec)
    gate = spec.gates[0]
    assert gate.metric is Metric.PROMETHEUS

    def tick(value: float) -> tuple[str, ...]:
        evidence = gather(spec, run.status, WINDOWS, readings={gate: Reading(value)})
        return tuple(n.kind for n in run.tick(evidence, after=1.0).notes)

    assert tick(0.5) == ("rollout.gate_failed",)
    assert tick(0.05) == ()  # a good reading resets the count
    assert tick(0.5) == ("rollout.gate_failed",)
    assert "rollout.rolled_back" in tick(0.5)
    assert run.status.phase is Phase.ROLLED_BACK
    assert "prometheus" in run.status.message


def test_an_unread_gate_holds_an_analysis_and_never_passes_it() -> None:
    spec = make_spec("canary", {"weights": [10], "pause_s": 0}, gates=[WEB])
    run = FakeController(spec)
    assert isinstance(run.step, Analyze)
    gate = spec.gates[0]

    for reading in (None, Reading(problem="answered 503"), Reading(problem="no answer")):
        found = {gate: reading} if reading else {}
        run.tick(gather(spec, run.status, WINDOWS, readings=found), after=1.0)
        assert isinstance(run.step, Analyze), run.status.message

    run.tick(gather(spec, run.status, WINDOWS, readings={gate: Reading(True)}), after=1.0)
    assert run.status.phase is Phase.PROMOTED
