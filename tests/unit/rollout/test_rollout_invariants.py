"""Invariants of the state machine over random specs, evidence, time and commands."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rollout_helpers import (
    ALL_CANDIDATE,
    ALL_STABLE,
    BAKE_GATES,
    FAIL,
    GATES,
    INCONCLUSIVE,
    PASS,
    WINNING,
    FakeController,
    check_plan,
    experiment,
    is_waiting,
    make_spec,
)

from rollwise.analysis.experiment import Outcome
from rollwise.analysis.judge import Judgement
from rollwise.errors import Conflict
from rollwise.rollout import (
    CommandKind,
    Decision,
    Evidence,
    Pause,
    Phase,
    RollbackPolicy,
    RolloutSpec,
    RolloutStatus,
    Strategy,
    routing_for,
)

ENDED = (
    Phase.PROMOTED,
    Phase.ROLLED_BACK,
    Phase.NO_DIFFERENCE,
    Phase.INCONCLUSIVE,
    Phase.VALIDATED,
    Phase.FAILED,
)
NEXT_PHASES: dict[Phase, tuple[Phase, ...]] = {
    Phase.PENDING: (Phase.PROGRESSING, Phase.PROMOTED, Phase.VALIDATED),
    Phase.PROGRESSING: (Phase.PROGRESSING, Phase.PAUSED, *ENDED),
    Phase.PAUSED: (Phase.PAUSED, Phase.PROGRESSING, *ENDED),
    Phase.PROMOTED: (Phase.PROMOTED, Phase.ROLLED_BACK),
    Phase.ROLLED_BACK: (Phase.ROLLED_BACK,),
    Phase.NO_DIFFERENCE: (Phase.NO_DIFFERENCE,),
    Phase.INCONCLUSIVE: (Phase.INCONCLUSIVE,),
    Phase.VALIDATED: (Phase.VALIDATED,),
    Phase.FAILED: (Phase.FAILED,),
}

# -- random specs ----------------------------------------------------------------------------

ROLLBACK_POLICIES: list[dict[str, Any] | None] = [
    None,
    {"failure_limit": 2},
    {"failure_limit": 3, "on_inconclusive_after_s": 60},
    {"on_inconclusive": "pause", "on_inconclusive_after_s": 120},
]


@st.composite
def custom_steps(draw: st.DrawFn) -> list[dict[str, Any]]:
    percent = st.integers(min_value=0, max_value=100)
    one = st.one_of(
        percent.map(lambda w: {"set_weight": w}),
        percent.map(lambda m: {"mirror": m}),
        st.sampled_from([0, 30, {}, None, {"duration_s": 90}]).map(lambda p: {"pause": p}),
        st.sampled_from([{}, {"max_duration_s": 60}]).map(
            lambda a: {"analyze": {"gates": GATES, **a}}
        ),
        st.integers(min_value=1, max_value=99).map(
            lambda s: {
                "experiment": {
                    "metric": "error_rate",
                    "mde": 0.02,
                    "split": s,
                    "max_duration_s": 300,
                }
            }
        ),
        percent.map(lambda m: {"preview": {"mirror": m}}),
        st.just({"switch": {"keep_previous_s": 60}}),
    )
    return draw(st.lists(one, min_size=1, max_size=6))


@st.composite
def specs(draw: st.DrawFn) -> RolloutSpec:
    strategy = draw(st.sampled_from(list(Strategy)))
    gates = draw(st.sampled_from([None, GATES]))
    rollback = draw(st.sampled_from(ROLLBACK_POLICIES))
    section: Any
    if strategy is Strategy.CANARY:
        weights = sorted(draw(st.sets(st.integers(1, 100), min_size=1, max_size=5)))
        section = {"weights": weights, "pause_s": draw(st.sampled_from([None, 0, 30, 90]))}
    elif strategy is Strategy.LINEAR:
        section = {
            "increment": draw(st.integers(1, 100)),
            "interval_s": draw(st.sampled_from([1, 30, 90])),
        }
    elif strategy is Strategy.STEPS:
        section = draw(custom_steps())
    elif strategy is Strategy.BLUEGREEN:
        auto_switch = draw(st.booleans())
        if auto_switch:
            gates = GATES
        section = {
            "mirror": draw(st.integers(0, 100)),
            "auto_switch": auto_switch,
            "bake_s": draw(st.sampled_from([0, 60])),
        }
        if section["bake_s"]:
            gates = BAKE_GATES
    elif strategy is Strategy.SHADOW:
        gates = GATES
        then = draw(
            st.sampled_from(
                [
                    "validated",
                    {"strategy": "canary", "canary": {"weights": [20, 60], "pause_s": 30}},
                    {"strategy": "linear", "linear": {"increment": 45, "interval_s": 30}},
                ]
            )
        )
        section = {"mirror": draw(st.integers(1, 100)), "then": then}
    else:
        section = {
            "metric": "accuracy",
            "mde": 0.05,
            "split": draw(st.integers(1, 99)),
            "max_duration_s": draw(st.sampled_from([60, 600])),
        }
    return make_spec(strategy.value, section, gates=gates, rollback=rollback)


# -- random evidence, time and commands ------------------------------------------------------

verdicts: st.SearchStrategy[Judgement | None] = st.sampled_from([None, PASS, FAIL, INCONCLUSIVE])


@st.composite
def evidences(draw: st.DrawFn) -> Evidence | None:
    if draw(st.integers(0, 5)) == 0:
        return None
    outcome = draw(st.sampled_from([None, *Outcome]))
    return Evidence(
        background=draw(verdicts),
        step=draw(verdicts),
        experiment=experiment(outcome) if outcome is not None else None,
        candidate_ready=draw(st.integers(0, 40)) != 0,
        candidate_problem="cannot load",
    )


@dataclass(frozen=True)
class Tick:
    after_s: float
    evidence: Evidence | None


@dataclass(frozen=True)
class Order:
    kind: CommandKind


gaps = st.sampled_from([0.0, 1.0, 10.0, 30.0, 60.0, 120.0, 600.0, 3600.0])
actions = st.lists(
    st.one_of(
        st.builds(Tick, gaps, evidences()),
        st.builds(Tick, gaps, evidences()),
        st.builds(Order, st.sampled_from(list(CommandKind))),
    ),
    max_size=40,
)


# -- the checks ------------------------------------------------------------------------------


def check_decision(
    spec: RolloutSpec,
    before: RolloutStatus | None,
    decision: Decision,
    applied: Any,
    command: CommandKind | None,
) -> None:
    """Everything that holds for one decision (``before`` is None for ``start``)."""
    after = decision.status
    plan = routing_for(after)
    check_plan(plan)
    assert applied == plan, "the routing applied is the one the status stands for"
    if decision.routing is not None:
        check_plan(decision.routing)

    old_phase = before.phase if before is not None else Phase.PENDING
    assert after.phase in NEXT_PHASES[old_phase], (old_phase, after.phase, command)
    if old_phase is Phase.PROMOTED and after.phase is Phase.ROLLED_BACK:
        assert command is CommandKind.ROLLBACK, "only a rollback undoes a promotion"
    if old_phase is Phase.PAUSED and after.phase in (
        Phase.PROGRESSING,
        Phase.PROMOTED,
        Phase.VALIDATED,
    ):
        assert command is not None, "a paused rollout goes on only when a person says so"

    old_index = before.step_index if before is not None else 0
    assert after.step_index >= old_index, "step_index never decreases"
    if before is not None and before.phase is Phase.PAUSED and command is None:
        assert after.step_index == old_index, "a paused rollout stays on its step"
    if command is not CommandKind.PROMOTE_FULL:
        # Steps passed over in one decision are instant steps only: the step being let
        # go (``before``'s), then nothing that waits.
        first = old_index + 1 if before is not None else 0
        passed = spec.steps[first : after.step_index]
        assert not any(is_waiting(s) for s in passed), (old_index, after.step_index, command)
    if after.phase.active:
        assert after.step_index < len(spec.steps)
        assert is_waiting(spec.steps[after.step_index]), "an active rollout waits on a step"
    if before is None or (before.phase, before.step_index, before.weight) != (
        after.phase,
        after.step_index,
        after.weight,
    ):
        assert decision.notes, "every change of phase, step or weight is an event"
    assert 0 <= after.weight <= 100
    assert 0 <= after.mirror <= 100
    assert after.failures <= spec.rollback.failure_limit
    if after.phase is Phase.PROMOTED:
        assert after.weight == 100
        assert plan.weights == {spec.candidate: 100}
    if after.phase in (Phase.ROLLED_BACK, Phase.VALIDATED, Phase.FAILED):
        assert plan.weights == {after.stable: 100}
        assert plan.mirrors == {}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(), actions)
def test_every_decision_keeps_the_invariants(spec: RolloutSpec, steps: list[Tick | Order]) -> None:
    run = FakeController(spec)
    check_decision(spec, None, run.first, run.routing, None)
    seen = {run.status.step_index}
    jumped: set[int] = set()
    for action in steps:
        before = run.status
        if isinstance(action, Order):
            try:
                decision = run.command(action.kind, after=1.0)
            except Conflict:
                assert run.status == before, "a refused command changes nothing"
                continue
            command: CommandKind | None = action.kind
        else:
            decision = run.tick(action.evidence, after=action.after_s)
            command = None
        check_decision(spec, before, decision, run.routing, command)
        seen.add(run.status.step_index)
        if command is CommandKind.PROMOTE_FULL:
            jumped.update(range(before.step_index + 1, run.status.step_index))
    reached = [
        i
        for i, step in enumerate(spec.steps[: run.status.step_index])
        if is_waiting(step) and i not in jumped
    ]
    assert set(reached) <= seen, "every waiting step passed was stood on by some status"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(), st.lists(st.sampled_from([30.0, 600.0, 3600.0]), min_size=1, max_size=5))
def test_passing_evidence_and_enough_time_always_finish_the_rollout(
    spec: RolloutSpec, waits: list[float]
) -> None:
    run = FakeController(spec)
    good = Evidence(background=PASS, step=PASS, experiment=WINNING.experiment)
    for i in range(5 * len(spec.steps) + 5):
        if not run.status.phase.active:
            break
        step = run.step
        if isinstance(step, Pause) and step.duration_s is None:
            run.command(CommandKind.PROMOTE)
        else:
            run.tick(good, after=waits[i % len(waits)])
    status = run.status
    if spec.promotes:
        assert status.phase is Phase.PROMOTED, status
        assert status.weight == 100
        assert run.routing == ALL_CANDIDATE
    else:
        assert status.phase is Phase.VALIDATED, status
        assert (status.weight, status.mirror) == (0, 0)
        assert run.routing == ALL_STABLE
    weights = [d.status.weight for d in run.decisions]
    if spec.strategy in (Strategy.CANARY, Strategy.LINEAR):
        assert weights == sorted(weights), "a canary or linear rollout only raises its weight"
        assert weights[-1] == 100


@settings(max_examples=80, deadline=None)
@given(specs(), st.integers(min_value=0, max_value=12))
def test_failing_gate_rolls_back_wherever_the_rollout_stands(spec: RolloutSpec, moves: int) -> None:
    spec = dataclasses.replace(spec, rollback=RollbackPolicy(failure_limit=1))
    run = FakeController(spec)
    for _ in range(moves):
        if not run.status.phase.active:
            break
        run.let_go()
    if not run.status.phase.active:
        return
    index = run.status.step_index
    decision = run.tick(Evidence(background=FAIL), after=1.0)
    assert decision.status.phase is Phase.ROLLED_BACK
    assert decision.status.step_index == index
    assert run.routing == ALL_STABLE
