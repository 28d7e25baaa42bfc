"""The rollout state machine: ``decide(spec, status, evidence, now) -> Decision``.

One pure function runs every strategy. Each controller tick hands it the spec, the
status read back from the store, the evidence judged from metrics since the current
weights took effect, and the time; it returns the next status, the routing to apply
(if it changed) and notes for the event log. A person's ``pause``, ``resume``,
``promote``, ``abort`` or ``rollback`` goes through the same function as a
:class:`Command`, so the rules live in one place and are tested tick by tick.

The rules of a tick, in order:

1. an ended rollout changes only on ``rollback`` (after a promotion);
2. a candidate that cannot load fails the rollout and sends all traffic to stable;
3. a failing judgement (background gates, or the current ``analyze`` step) counts
   towards the failure limit and rolls back when it reaches it; anything else resets
   the count. This applies while paused too: pausing never disarms the gates;
4. a paused rollout goes no further;
5. the current waiting step lets go when its time is up (``pause``), its gates pass
   (``analyze``) or its test decides (``experiment``); an ``analyze`` that stays
   undecided past its limit rolls back (or pauses, by policy), and an ``experiment``
   that does keeps the stable version with "no difference" — undecided is never a pass;
6. instant steps after it run in the same tick; past the last step the rollout is
   promoted (or validated, when its steps never gave the candidate live traffic).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from rollwise.analysis.experiment import ExperimentDecision, Outcome
from rollwise.analysis.judge import Judgement
from rollwise.analysis.verdict import GateResult, Verdict
from rollwise.errors import Conflict
from rollwise.rollout.spec import OnInconclusive, RolloutSpec, planned_samples
from rollwise.rollout.status import Phase, RolloutStatus
from rollwise.rollout.steps import (
    INSTANT_STEPS,
    Analyze,
    Experiment,
    MirrorStep,
    Pause,
    Preview,
    SetWeight,
    Step,
    Switch,
    describe_step,
)


class CommandKind(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    """Let the current step go (a ``pause`` until promoted, an analysis, a test)."""
    PROMOTE_FULL = "promote_full"
    """Make the candidate stable now, skipping every remaining step."""
    ABORT = "abort"
    ROLLBACK = "rollback"
    """Abort a rollout in progress, or undo a promoted one."""


@dataclass(frozen=True, slots=True)
class Command:
    kind: CommandKind
    actor: str = "operator"
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the controller measured for this tick; None where nothing was judged."""

    background: Judgement | None = None
    step: Judgement | None = None
    experiment: ExperimentDecision | None = None
    candidate_ready: bool = True
    candidate_problem: str = ""


@dataclass(frozen=True, slots=True)
class RoutingPlan:
    """The routing a status implies: the anchor, integer weights summing to 100, mirrors."""

    stable: str
    weights: Mapping[str, int]
    mirrors: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Note:
    """An event to record with the decision: its kind, one line, and the figures."""

    kind: str
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    status: RolloutStatus
    routing: RoutingPlan | None = None
    """The routing to apply, when it differs from the one before this decision."""
    notes: tuple[Note, ...] = ()


def routing_for(status: RolloutStatus) -> RoutingPlan:
    """The routing that ``status`` stands for."""
    stable, candidate = status.stable, status.candidate
    if status.phase is Phase.PROMOTED:
        return RoutingPlan(candidate, {candidate: 100})
    if not status.phase.active:
        return RoutingPlan(stable, {stable: 100})
    weights = {stable: 100 - status.weight, candidate: status.weight}
    mirrors = {candidate: status.mirror} if status.mirror and not status.weight else {}
    return RoutingPlan(stable, weights, mirrors)


class _Tick:
    """The decision being built: status updates and notes, applied in order."""

    def __init__(self, spec: RolloutSpec, status: RolloutStatus, now: float) -> None:
        self.spec = spec
        self.before = status
        self.status = status
        self.now = now
        self.notes: list[Note] = []
        self.actor = "controller"
        """Who this decision acts for: the controller, or the person whose command it is."""

    def set(self, **changes: Any) -> None:
        self.status = dataclasses.replace(self.status, **changes)

    def note(self, kind: str, message: str, **data: Any) -> None:
        figures = {
            # Counted from 1, as in the messages ("step 2/7") and the rollout summary.
            "step": min(self.status.step_index + 1, len(self.spec.steps)),
            "steps": len(self.spec.steps),
            "weight": self.status.weight,
            "mirror": self.status.mirror,
            "phase": self.status.phase.value,
            **data,
        }
        self.notes.append(Note(kind, message, figures))

    def decision(self) -> Decision:
        status = self.status
        if status != self.before or self.notes:
            status = dataclasses.replace(status, updated_s=self.now)
        old, new = routing_for(self.before), routing_for(status)
        return Decision(status, new if new != old else None, tuple(self.notes))


def start(
    spec: RolloutSpec,
    *,
    stable: str,
    now: float,
    actor: str = "operator",
    split_by_user: bool = False,
) -> Decision:
    """The first decision of a new rollout from ``stable``: its first steps entered.
    ``split_by_user``: the model routes by a sticky user key (see ``RolloutStatus``)."""
    if spec.candidate == stable:
        raise Conflict(f"model {spec.model!r}: {stable!r} is already the stable version")
    status = RolloutStatus(
        model=spec.model,
        stable=stable,
        candidate=spec.candidate,
        phase=Phase.PENDING,
        started_s=now,
        step_started_s=now,
        measure_since_s=now,
        updated_s=now,
        actor=actor,
        split_by_user=split_by_user,
    )
    tick = _Tick(spec, status, now)
    tick.set(phase=Phase.PROGRESSING, message="started")
    tick.note(
        "rollout.started",
        f"{spec.summary()} from {stable} started by {actor}: {len(spec.steps)} steps",
        strategy=spec.strategy.value,
        candidate=spec.candidate,
        stable=stable,
        spec=spec.to_dict(),
        actor=actor,
    )
    _enter(tick)
    decision = tick.decision()
    # The first routing is always written, so stale mirrors or weights of other
    # versions never survive into a rollout.
    return dataclasses.replace(decision, routing=routing_for(decision.status))


def halt(spec: RolloutSpec, status: RolloutStatus, why: str, now: float) -> Decision:
    """End a rollout that cannot go on (e.g. its stored spec is no longer valid):
    phase failed, all traffic back on the stable version."""
    tick = _Tick(spec, status, now)
    if status.phase.active:
        _end(tick, Phase.FAILED, "failed", why)
    return tick.decision()


def decide(
    spec: RolloutSpec,
    status: RolloutStatus,
    evidence: Evidence | None,
    now: float,
    command: Command | None = None,
) -> Decision:
    """The next decision (rules in the module docstring). A command that does not fit
    the rollout's phase raises :class:`~rollwise.errors.Conflict` saying why."""
    tick = _Tick(spec, status, now)
    if command is not None:
        _command(tick, command)
        return tick.decision()
    if not status.phase.active:
        return tick.decision()
    evidence = evidence or Evidence()
    if not evidence.candidate_ready:
        problem = evidence.candidate_problem or "not ready"
        _end(tick, Phase.FAILED, "failed", f"candidate {spec.candidate} cannot serve: {problem}")
        return tick.decision()
    step = _current(tick)
    judgement = _figures(evidence, step)
    if judgement != (status.judgement or {}):
        tick.set(judgement=judgement)
    failing = _failing(evidence, step)
    if failing is not None:
        failures = status.failures + 1
        tick.set(failures=failures)
        limit = spec.rollback.failure_limit
        why = _failure(failing)
        if failures >= limit:
            _rollback(tick, why, judgement=judgement)
        else:
            tick.note(
                "rollout.gate_failed",
                f"{why} (failing judgement {failures} of {limit})",
                judgement=judgement,
            )
        return tick.decision()
    if status.failures:
        tick.set(failures=0)
    if status.phase is Phase.PAUSED or step is None:
        return tick.decision()
    _wait(tick, step, evidence)
    return tick.decision()


# -- waiting steps -----------------------------------------------------------------------


def _current(tick: _Tick) -> Step | None:
    index = tick.status.step_index
    return tick.spec.steps[index] if 0 <= index < len(tick.spec.steps) else None


def _figures(evidence: Evidence, step: Step | None) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    if evidence.background is not None:
        figures["background"] = evidence.background.to_dict()
    if evidence.step is not None and isinstance(step, Analyze):
        figures["step"] = evidence.step.to_dict()
    # An A/B step's decision is kept in ``status.experiment``, beside its plan.
    return figures


def _failing(evidence: Evidence, step: Step | None) -> Judgement | None:
    if evidence.background is not None and evidence.background.verdict is Verdict.FAIL:
        return evidence.background
    if (
        isinstance(step, Analyze)
        and evidence.step is not None
        and evidence.step.verdict is Verdict.FAIL
    ):
        return evidence.step
    return None


def _figures_of(result: GateResult, *, interval: bool) -> str:
    figures = []
    if result.candidate_value is not None:
        figures.append(f"candidate {result.candidate_value:.4g}")
    if result.stable_value is not None and result.gate.bound.relative:
        figures.append(f"stable {result.stable_value:.4g}")
    if interval and result.interval is not None:
        figures.append(f"interval [{result.interval.low:.4g}, {result.interval.high:.4g}]")
    return f" ({', '.join(figures)})" if figures else ""


def _failure(judgement: Judgement) -> str:
    """Which gates failed, with the figures: what a person reads first in the event."""
    parts = [f"{r.gate.describe()}{_figures_of(r, interval=True)}" for r in judgement.failed]
    if not parts:
        return judgement.reason
    return "gate failed: " + "; ".join(parts)


def _passed(judgement: Judgement) -> str:
    """The gates an analysis passed on, with the figures."""
    shown = "; ".join(
        f"{r.gate.metric.value}{_figures_of(r, interval=False)}" for r in judgement.gates
    )
    return f"analysis passed: {shown}" if shown else "analysis passed"


def _wait(tick: _Tick, step: Step, evidence: Evidence) -> None:
    elapsed_s = tick.now - tick.status.step_started_s
    if isinstance(step, Pause):
        if step.duration_s is not None and elapsed_s >= step.duration_s:
            _advance(tick, f"paused {step.duration_s:g} s")
        return
    if isinstance(step, Analyze):
        verdict = evidence.step
        if verdict is not None and verdict.verdict is Verdict.PASS:
            why = _passed(verdict)
            tick.note("rollout.analysis_passed", why, judgement=verdict.to_dict())
            _advance(tick, why)
            return
        limit_s = step.max_duration_s or tick.spec.rollback.on_inconclusive_after_s
        if elapsed_s >= limit_s:
            why = verdict.reason if verdict is not None else "nothing to judge"
            _inconclusive(tick, f"analysis undecided after {limit_s:g} s ({why})")
        return
    if isinstance(step, Experiment):
        _experiment(tick, step, evidence.experiment, elapsed_s)


def _experiment(
    tick: _Tick, step: Experiment, result: ExperimentDecision | None, elapsed_s: float
) -> None:
    if result is not None:
        experiment = {**(tick.status.experiment or {}), "decision": result.to_dict()}
        tick.set(experiment=experiment)
    outcome = result.outcome if result is not None else Outcome.CONTINUE
    if outcome is Outcome.CONTINUE and elapsed_s >= step.max_duration_s:
        reason = result.reason if result is not None else "no data"
        _keep_stable(
            tick,
            f"no difference in {step.metric.value} detected within the maximum duration "
            f"({step.max_duration_s:g} s; {reason}); {tick.status.stable} stays stable",
        )
        return
    if result is None or outcome is Outcome.CONTINUE:
        return
    figures = result.to_dict()
    metric = step.metric.value
    stable, candidate = tick.status.stable, tick.status.candidate
    if outcome is Outcome.INVALID:
        _rollback(tick, f"A/B test invalid: {result.reason}", experiment=figures)
        return
    winner = {Outcome.CANDIDATE_BETTER: candidate, Outcome.STABLE_BETTER: stable}.get(outcome)
    verdict = f"{winner} is better on {metric}" if winner else f"no difference on {metric}"
    tick.note(
        "rollout.experiment_decided",
        f"A/B test: {verdict}: {result.reason}",
        experiment=figures,
        winner=winner,
    )
    if outcome is Outcome.CANDIDATE_BETTER:
        _advance(tick, f"{candidate} won the A/B test")
    elif outcome is Outcome.STABLE_BETTER:
        _rollback(tick, f"{stable} won the A/B test: {result.reason}")
    else:
        _keep_stable(tick, f"no difference: {result.reason}; {stable} stays stable")


def _inconclusive(tick: _Tick, reason: str) -> None:
    if tick.spec.rollback.on_inconclusive is OnInconclusive.PAUSE:
        tick.set(phase=Phase.PAUSED, message=reason, actor="controller")
        tick.note("rollout.paused", f"paused for a person to decide: {reason}")
    else:
        _rollback(tick, reason)


# -- moving on ---------------------------------------------------------------------------


def _advance(tick: _Tick, why: str) -> None:
    tick.set(step_index=tick.status.step_index + 1, message=why)
    _enter(tick)


def _enter(tick: _Tick) -> None:
    """Run instant steps from the current index; stop at a waiting step or the end."""
    steps = tick.spec.steps
    while tick.status.step_index < len(steps):
        step = steps[tick.status.step_index]
        now = tick.now
        tick.set(step_started_s=now)
        if isinstance(step, SetWeight):
            tick.set(weight=step.weight, mirror=0 if step.weight else tick.status.mirror)
            tick.set(measure_since_s=now, preview=False)
        elif isinstance(step, MirrorStep):
            tick.set(mirror=step.percent, measure_since_s=now)
        elif isinstance(step, Preview):
            tick.set(preview=True, mirror=step.mirror, measure_since_s=now)
        elif isinstance(step, Switch):
            tick.set(weight=100, mirror=0, preview=False, measure_since_s=now)
        elif isinstance(step, Experiment):
            plan = planned_samples(step)
            tick.set(weight=step.split, mirror=0, preview=False, measure_since_s=now)
            tick.set(experiment={"samples_per_arm": plan, "metric": step.metric.value})
        tick.note(
            "rollout.step",
            f"step {tick.status.step_index + 1}/{len(steps)}: {describe_step(step)}",
            description=describe_step(step),
        )
        if not isinstance(step, INSTANT_STEPS):
            return
        tick.set(step_index=tick.status.step_index + 1)
    if tick.spec.promotes:
        _promote(tick, tick.status.message or "all steps done")
    else:
        why = tick.status.message or "all steps done"
        _end(tick, Phase.VALIDATED, "validated", f"{tick.spec.candidate} validated: {why}")


def _keep_after(tick: _Tick) -> float:
    switches = [s for s in tick.spec.steps if isinstance(s, Switch)]
    return switches[-1].keep_previous_s if switches else 600.0


def _promote(tick: _Tick, why: str) -> None:
    status = tick.status
    actor = tick.actor
    tick.set(
        phase=Phase.PROMOTED,
        outcome="promoted",
        weight=100,
        mirror=0,
        preview=False,
        step_index=len(tick.spec.steps),
        finished_s=tick.now,
        previous_stable=status.stable,
        keep_previous_until_s=tick.now + _keep_after(tick),
        message=f"promoted: {why}",
        actor=actor,
    )
    tick.note(
        "rollout.promoted",
        f"{status.candidate} promoted to stable (was {status.stable}): {why}",
        previous_stable=status.stable,
        actor=actor,
    )


def _end(tick: _Tick, phase: Phase, outcome: str, why: str, **data: Any) -> None:
    """End the rollout in ``phase``; all traffic goes to the stable version (routing
    follows from the status, see :func:`routing_for`)."""
    actor = tick.actor
    tick.set(
        phase=phase,
        outcome=outcome,
        weight=0,
        mirror=0,
        preview=False,
        finished_s=tick.now,
        message=why,
        actor=actor,
    )
    tick.note(f"rollout.{phase.value}", why, outcome=outcome, actor=actor, **data)


def _rollback(tick: _Tick, why: str, *, outcome: str = "rolled_back", **data: Any) -> None:
    _end(tick, Phase.ROLLED_BACK, outcome, f"rolled back to {tick.status.stable}: {why}", **data)


def _keep_stable(tick: _Tick, why: str) -> None:
    _end(tick, Phase.ROLLED_BACK, "no_difference", why)


# -- a person's commands -----------------------------------------------------------------


def _command(tick: _Tick, command: Command) -> None:
    status = tick.status
    who = command.actor
    tick.actor = who
    because = f" ({command.reason})" if command.reason else ""
    name = f"the rollout of {status.model} to {status.candidate}"
    if command.kind is CommandKind.ROLLBACK and status.phase is Phase.PROMOTED:
        previous = status.previous_stable or status.stable
        message = f"rolled back to {previous} by {who}{because}; {status.candidate} was stable"
        tick.set(
            phase=Phase.ROLLED_BACK,
            outcome="rolled_back",
            weight=0,
            mirror=0,
            finished_s=tick.now,
            message=message,
            actor=who,
        )
        tick.note("rollout.rolled_back", message, actor=who, after_promotion=True)
        return
    if not status.phase.active:
        hint = (
            f"; {status.stable} is serving, nothing to roll back (rollwise route sends "
            "traffic to any version)"
            if command.kind is CommandKind.ROLLBACK
            else "; start a new one with apply"
        )
        raise Conflict(f"{name} has ended ({status.phase.value}){hint}")
    if command.kind is CommandKind.PAUSE:
        if status.phase is Phase.PAUSED:
            raise Conflict(f"{name} is already paused")
        tick.set(
            phase=Phase.PAUSED,
            message=f"paused by {who}{because}",
            actor=who,
            paused_elapsed_s=tick.now - status.step_started_s,
        )
        tick.note("rollout.paused", f"paused by {who}{because}", actor=who)
    elif command.kind is CommandKind.RESUME:
        if status.phase is not Phase.PAUSED:
            raise Conflict(f"{name} is {status.phase.value}, not paused")
        # Time spent paused does not count towards a pause or a time limit: the step
        # goes on from where a person paused it. After a pause for an undecided
        # analysis, its clock starts again, so the analysis gets a whole limit anew.
        elapsed_s = status.paused_elapsed_s or 0.0
        tick.set(
            phase=Phase.PROGRESSING,
            step_started_s=tick.now - elapsed_s,
            paused_elapsed_s=None,
            message=f"resumed by {who}{because}",
            actor=who,
        )
        tick.note("rollout.resumed", f"resumed by {who}{because}", actor=who)
    elif command.kind is CommandKind.PROMOTE:
        step = _current(tick)
        shown = describe_step(step) if step is not None else "end"
        tick.set(phase=Phase.PROGRESSING, actor=who)
        tick.note(
            "rollout.step_skipped",
            f"step {status.step_index + 1} ({shown}) let go by {who}{because}",
            actor=who,
        )
        _advance(tick, f"promoted by {who}{because}")
    elif command.kind is CommandKind.PROMOTE_FULL:
        _promote(tick, f"fully promoted by {who}{because}")
    else:
        aborted = command.kind is CommandKind.ABORT
        verb = "aborted" if aborted else "rolled back"
        outcome = "aborted" if aborted else "rolled_back"
        _rollback(tick, f"{verb} by {who}{because}", outcome=outcome)
