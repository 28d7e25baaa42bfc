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
   (``analyze``), its test decides (``experiment``) or its hook answers 2xx
   (``webhook``, ``confirm``: :mod:`rollwise.rollout.hook_steps`); an ``analyze`` that stays
   undecided past its limit rolls back (or pauses, by policy), and an ``experiment``
   that does ends ``inconclusive``, keeping the stable version — undecided is never a
   pass; an experiment without a winner ends ``no_difference`` or ``inconclusive``, as
   its evidence says, never as a rollback;
6. instant steps after it run in the same tick; past the last step the rollout is
   promoted (or validated, when its steps never gave the candidate live traffic).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rollwise.analysis.experiment import ExperimentDecision, Outcome
from rollwise.analysis.horizon import experiment_horizon, judgement_figures
from rollwise.analysis.judge import Judgement
from rollwise.analysis.verdict import GateResult, Verdict
from rollwise.errors import Conflict
from rollwise.rollout.commands import Command, CommandKind, run_command
from rollwise.rollout.hook_steps import wait_for_hook
from rollwise.rollout.hooks import Confirm, HookOutcome, Webhook
from rollwise.rollout.spec import OnInconclusive, RolloutSpec
from rollwise.rollout.status import Phase, RolloutStatus
from rollwise.rollout.steps import Analyze, Experiment, Pause, Step
from rollwise.rollout.tick import (
    Decision,
    Note,
    RoutingPlan,
    Tick,
    advance,
    current_step,
    end,
    enter,
    keep_stable,
    rollback,
    routing_for,
)

__all__ = [
    "Command",
    "CommandKind",
    "Decision",
    "Evidence",
    "Note",
    "RoutingPlan",
    "decide",
    "halt",
    "routing_for",
    "start",
]


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the controller measured for this tick; None where nothing was judged."""

    background: Judgement | None = None
    step: Judgement | None = None
    experiment: ExperimentDecision | None = None
    candidate_ready: bool = True
    candidate_problem: str = ""
    hook: HookOutcome | None = None
    """The latest outcome of the current hook step's call (``webhook``, ``confirm``)."""


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
    tick = Tick(spec, status, now)
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
    enter(tick)
    decision = tick.decision()
    # The first routing is always written, so stale mirrors or weights of other
    # versions never survive into a rollout.
    return dataclasses.replace(decision, routing=routing_for(decision.status))


def halt(spec: RolloutSpec, status: RolloutStatus, why: str, now: float) -> Decision:
    """End a rollout that cannot go on (e.g. its stored spec is no longer valid):
    phase failed, all traffic back on the stable version."""
    tick = Tick(spec, status, now)
    if status.phase.active:
        end(tick, Phase.FAILED, "failed", why)
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
    tick = Tick(spec, status, now)
    if command is not None:
        run_command(tick, command)
        return tick.decision()
    if not status.phase.active:
        return tick.decision()
    evidence = evidence or Evidence()
    if not evidence.candidate_ready:
        problem = evidence.candidate_problem or "not ready"
        end(tick, Phase.FAILED, "failed", f"candidate {spec.candidate} cannot serve: {problem}")
        return tick.decision()
    step = current_step(tick)
    judgement = _figures(evidence, step, now - status.measure_since_s)
    if judgement != (status.judgement or {}):
        tick.set(judgement=judgement)
    failing = _failing(evidence, step)
    if failing is not None:
        failures = status.failures + 1
        tick.set(failures=failures)
        limit = spec.rollback.failure_limit
        why = _failure(failing)
        if failures >= limit:
            rollback(tick, why, judgement=judgement)
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


def _figures(evidence: Evidence, step: Step | None, measured_s: float) -> dict[str, Any]:
    """The judgements' figures for people, each undecided gate with how much longer it
    needs at the rate its samples arrived since the current weights took effect."""
    figures: dict[str, Any] = {}
    if evidence.background is not None:
        figures["background"] = judgement_figures(evidence.background, measured_s)
    if evidence.step is not None and isinstance(step, Analyze):
        figures["step"] = judgement_figures(evidence.step, measured_s)
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


def _wait(tick: Tick, step: Step, evidence: Evidence) -> None:
    elapsed_s = tick.now - tick.status.step_started_s
    if isinstance(step, Pause):
        if step.duration_s is not None and elapsed_s >= step.duration_s:
            advance(tick, f"paused {step.duration_s:g} s")
        return
    if isinstance(step, Analyze):
        verdict = evidence.step
        if verdict is not None and verdict.verdict is Verdict.PASS:
            why = _passed(verdict)
            tick.note("rollout.analysis_passed", why, judgement=verdict.to_dict())
            advance(tick, why)
            return
        limit_s = step.max_duration_s or tick.spec.rollback.on_inconclusive_after_s
        if elapsed_s >= limit_s:
            why = verdict.reason if verdict is not None else "nothing to judge"
            _inconclusive(tick, f"analysis undecided after {limit_s:g} s ({why})")
        return
    if isinstance(step, Experiment):
        _experiment(tick, step, evidence.experiment, elapsed_s)
    if isinstance(step, Webhook | Confirm):
        wait_for_hook(tick, step, evidence.hook)


def _experiment(
    tick: Tick, step: Experiment, result: ExperimentDecision | None, elapsed_s: float
) -> None:
    if result is not None:
        experiment = {**(tick.status.experiment or {}), "decision": result.to_dict()}
        planned = int(experiment.get("samples_per_arm") or 0)
        horizon = experiment_horizon(result, planned, elapsed_s)
        experiment["horizon"] = horizon.to_dict() if horizon is not None else None
        tick.set(experiment=experiment)
    outcome = result.outcome if result is not None else Outcome.CONTINUE
    if outcome is Outcome.CONTINUE and elapsed_s >= step.max_duration_s:
        reason = result.reason if result is not None else "no data"
        keep_stable(
            tick,
            Phase.INCONCLUSIVE,
            f"inconclusive: the A/B test on {step.metric.value} was undecided when its "
            f"maximum duration of {step.max_duration_s:g} s passed ({reason})",
        )
        return
    if result is None or outcome is Outcome.CONTINUE:
        return
    figures = result.to_dict()
    metric = step.metric.value
    stable, candidate = tick.status.stable, tick.status.candidate
    if outcome is Outcome.INVALID:
        rollback(tick, f"A/B test invalid: {result.reason}", experiment=figures)
        return
    winner = {Outcome.CANDIDATE_BETTER: candidate, Outcome.STABLE_BETTER: stable}.get(outcome)
    verdict = {
        Outcome.NO_DIFFERENCE: f"no difference on {metric}",
        Outcome.INCONCLUSIVE: f"inconclusive on {metric} at the planned size",
    }.get(outcome, f"{winner} is better on {metric}")
    tick.note(
        "rollout.experiment_decided",
        f"A/B test: {verdict}: {result.reason}",
        experiment=figures,
        winner=winner,
    )
    if outcome is Outcome.CANDIDATE_BETTER:
        advance(tick, f"{candidate} won the A/B test")
    elif outcome is Outcome.STABLE_BETTER:
        rollback(tick, f"{stable} won the A/B test: {result.reason}")
    elif outcome is Outcome.NO_DIFFERENCE:
        keep_stable(tick, Phase.NO_DIFFERENCE, f"no difference: {result.reason}")
    else:
        # Only the planned size ends a test undecided; its time limit is handled above.
        keep_stable(tick, Phase.INCONCLUSIVE, f"inconclusive at the planned size: {result.reason}")


def _inconclusive(tick: Tick, reason: str) -> None:
    if tick.spec.rollback.on_inconclusive is OnInconclusive.PAUSE:
        tick.set(phase=Phase.PAUSED, message=reason, actor="controller")
        tick.note("rollout.paused", f"paused for a person to decide: {reason}")
    else:
        rollback(tick, reason)
