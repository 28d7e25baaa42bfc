"""Shared values for the rollout tests: specs, judgements, and a fake controller.

The fake controller does what the real one does around the pure state machine and
nothing more: it keeps the status and the routing last applied, moves a fake clock, and
hands every decision back so that a test can look at its notes and routing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rollwise.analysis.experiment import ExperimentDecision, Outcome
from rollwise.analysis.gates import parse_gates
from rollwise.analysis.judge import Judgement
from rollwise.analysis.verdict import Verdict
from rollwise.rollout import (
    Analyze,
    Command,
    CommandKind,
    Decision,
    Evidence,
    Experiment,
    Pause,
    RolloutSpec,
    RolloutStatus,
    RoutingPlan,
    Step,
    decide,
    parse_rollout_spec,
    start,
)
from rollwise.rollout.steps import INSTANT_STEPS

T0 = 1_700_000_000.0
STABLE = "v1"
CANDIDATE = "v2"
MODEL = "iris"

GATES: list[dict[str, Any]] = [{"metric": "error_rate", "max_increase": 0.005}]
GATE_VALUES = parse_gates(GATES)
BAKE_GATES: list[dict[str, Any]] = [*GATES, {"metric": "error_rate", "max": 0.05}]
"""A blue-green bake is judged by absolute bounds only: the old version serves nobody."""

# Note kinds, as the event log records them.
STARTED = "rollout.started"
STEP = "rollout.step"
PASSED = "rollout.analysis_passed"
GATE_FAILED = "rollout.gate_failed"
PROMOTED = "rollout.promoted"
ROLLED_BACK = "rollout.rolled_back"
VALIDATED = "rollout.validated"
FAILED = "rollout.failed"
PAUSED = "rollout.paused"
RESUMED = "rollout.resumed"
SKIPPED = "rollout.step_skipped"
DECIDED = "rollout.experiment_decided"


def raw_spec(
    strategy: str,
    section: Any = None,
    *,
    gates: list[dict[str, Any]] | None = None,
    rollback: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A rollout spec mapping as a user writes it."""
    data: dict[str, Any] = {"model": MODEL, "candidate": CANDIDATE, "strategy": strategy}
    if section is not None:
        data[strategy] = section
    if gates is not None:
        data["gates"] = gates
    if rollback is not None:
        data["rollback"] = dict(rollback)
    return data


def make_spec(
    strategy: str,
    section: Any = None,
    *,
    gates: list[dict[str, Any]] | None = None,
    rollback: Mapping[str, Any] | None = None,
) -> RolloutSpec:
    return parse_rollout_spec(raw_spec(strategy, section, gates=gates, rollback=rollback))


# -- judgements and evidence ---------------------------------------------------------------


def judgement(verdict: Verdict, reason: str) -> Judgement:
    return Judgement(verdict, reason, (), None, "holm")


PASS = judgement(Verdict.PASS, "all 1 gates pass")
FAIL = judgement(Verdict.FAIL, "failed: error_rate at most 0.005 above stable")
INCONCLUSIVE = judgement(Verdict.INCONCLUSIVE, "waiting for: error_rate (too few samples)")


def experiment(outcome: Outcome, reason: str = "") -> ExperimentDecision:
    return ExperimentDecision(outcome, reason or f"{outcome.value} on purpose")


PASSING = Evidence(background=PASS, step=PASS)
FAILING = Evidence(background=FAIL)
UNDECIDED = Evidence(background=INCONCLUSIVE, step=INCONCLUSIVE)
WINNING = Evidence(background=PASS, experiment=experiment(Outcome.CANDIDATE_BETTER))


# -- routing ---------------------------------------------------------------------------------


def split(stable: int, candidate: int, mirror: int = 0) -> RoutingPlan:
    """The routing of a rollout in progress from ``v1`` to ``v2``."""
    mirrors = {CANDIDATE: mirror} if mirror else {}
    return RoutingPlan(STABLE, {STABLE: stable, CANDIDATE: candidate}, mirrors)


ALL_STABLE = RoutingPlan(STABLE, {STABLE: 100})
ALL_CANDIDATE = RoutingPlan(CANDIDATE, {CANDIDATE: 100})


def check_plan(plan: RoutingPlan) -> None:
    """Whole weights in 0..100 summing to 100; mirrors only on a version without weight."""
    assert plan.stable in plan.weights
    for version, weight in plan.weights.items():
        assert isinstance(weight, int), (version, weight)
        assert 0 <= weight <= 100, (version, weight)
    assert sum(plan.weights.values()) == 100, plan
    for version, percent in plan.mirrors.items():
        assert plan.weights.get(version, 0) == 0, f"{version} is mirrored and weighted: {plan}"
        assert isinstance(percent, int)
        assert 0 < percent <= 100, plan


# -- steps -----------------------------------------------------------------------------------


def is_waiting(step: Step) -> bool:
    return not isinstance(step, INSTANT_STEPS)


def waiting_indices(spec: RolloutSpec) -> list[int]:
    return [i for i, s in enumerate(spec.steps) if is_waiting(s)]


def kinds(decision: Decision) -> tuple[str, ...]:
    return tuple(note.kind for note in decision.notes)


# -- the fake controller ---------------------------------------------------------------------


class FakeController:
    """Runs one rollout the way the controller does, on a fake clock."""

    def __init__(
        self, spec: RolloutSpec, *, stable: str = STABLE, now: float = T0, actor: str = "alice"
    ) -> None:
        self.spec = spec
        self.now = now
        first = start(spec, stable=stable, now=now, actor=actor)
        assert first.routing is not None, "the first decision always carries a routing"
        self.status: RolloutStatus = first.status
        self.routing: RoutingPlan = first.routing
        self.decisions: list[Decision] = [first]

    @property
    def first(self) -> Decision:
        return self.decisions[0]

    @property
    def step(self) -> Step | None:
        index = self.status.step_index
        return self.spec.steps[index] if index < len(self.spec.steps) else None

    def tick(self, evidence: Evidence | None = None, *, after: float = 0.0) -> Decision:
        self.now += after
        return self._apply(decide(self.spec, self.status, evidence, self.now))

    def command(
        self,
        kind: CommandKind,
        *,
        after: float = 0.0,
        actor: str = "alice",
        reason: str = "",
    ) -> Decision:
        self.now += after
        order = Command(kind, actor, reason)
        return self._apply(decide(self.spec, self.status, None, self.now, order))

    def _apply(self, decision: Decision) -> Decision:
        self.status = decision.status
        if decision.routing is not None:
            self.routing = decision.routing
        self.decisions.append(decision)
        return decision

    def let_go(self) -> Decision:
        """Do what the current waiting step needs to end well: wait out a pause, pass an
        analysis, win an A/B test, or have a person promote a pause without a time."""
        step = self.step
        if isinstance(step, Pause):
            if step.duration_s is None:
                return self.command(CommandKind.PROMOTE)
            return self.tick(PASSING, after=step.duration_s)
        if isinstance(step, Analyze):
            return self.tick(PASSING, after=1.0)
        if isinstance(step, Experiment):
            return self.tick(WINNING, after=1.0)
        raise AssertionError(f"not at a waiting step: {step!r} ({self.status})")

    def drive_to(self, index: int) -> None:
        """Let waiting steps go until the rollout stands at step ``index``."""
        while self.status.step_index < index and self.status.phase.active:
            self.let_go()
        assert self.status.step_index == index, (index, self.status)

    def run_to_end(self) -> None:
        for _ in range(4 * len(self.spec.steps) + 4):
            if not self.status.phase.active:
                return
            self.let_go()
        raise AssertionError(f"the rollout did not end: {self.status}")
