"""The decision a tick builds, and how a rollout moves on and ends.

:class:`Tick` collects the status changes and event notes of one decision; the
functions below are the moves every rule ends in: run the instant steps from the
current one (``enter``), let a step go (``advance``), promote, and end a rollout with
all traffic on the stable version (``end``: a rollback, a failure, a validated shadow,
or an A/B test without a winner). :mod:`rollwise.rollout.machine` decides which move a
tick makes; :mod:`rollwise.rollout.commands` does the same for a person's commands.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rollwise.rollout.spec import RolloutSpec, planned_samples
from rollwise.rollout.status import Phase, RolloutStatus
from rollwise.rollout.steps import (
    INSTANT_STEPS,
    Experiment,
    MirrorStep,
    Preview,
    SetWeight,
    Step,
    Switch,
    describe_step,
)


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


class Tick:
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


def current_step(tick: Tick) -> Step | None:
    index = tick.status.step_index
    return tick.spec.steps[index] if 0 <= index < len(tick.spec.steps) else None


def advance(tick: Tick, why: str) -> None:
    tick.set(step_index=tick.status.step_index + 1, message=why)
    enter(tick)


def enter(tick: Tick) -> None:
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
        promote(tick, tick.status.message or "all steps done")
    else:
        why = tick.status.message or "all steps done"
        end(tick, Phase.VALIDATED, "validated", f"{tick.spec.candidate} validated: {why}")


def _keep_after(tick: Tick) -> float:
    switches = [s for s in tick.spec.steps if isinstance(s, Switch)]
    return switches[-1].keep_previous_s if switches else 600.0


def promote(tick: Tick, why: str) -> None:
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


def end(tick: Tick, phase: Phase, outcome: str, why: str, **data: Any) -> None:
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


def rollback(tick: Tick, why: str, *, outcome: str = "rolled_back", **data: Any) -> None:
    end(tick, Phase.ROLLED_BACK, outcome, f"rolled back to {tick.status.stable}: {why}", **data)


def keep_stable(tick: Tick, phase: Phase, why: str) -> None:
    """End an A/B test without a winner: the stable version stays, the candidate leaves
    the split. Named by what the test found, not as a rollback: nothing failed."""
    status = tick.status
    shown = f"{why}; {status.stable} stays stable and {status.candidate} gets no traffic"
    end(tick, phase, phase.value, shown)
