"""A person's commands on a rollout: pause, resume, promote, abort, rollback.

They go through :func:`rollwise.rollout.machine.decide` like a controller's tick, so the
rules live in one place; a command that does not fit the rollout's phase raises
:class:`~rollwise.errors.Conflict` saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rollwise.errors import Conflict
from rollwise.rollout.status import Phase
from rollwise.rollout.steps import describe_step
from rollwise.rollout.tick import Tick, advance, current_step, promote, rollback


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


def run_command(tick: Tick, command: Command) -> None:
    """Carry out a person's ``command`` in ``tick``."""
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
        step = current_step(tick)
        shown = describe_step(step) if step is not None else "end"
        tick.set(phase=Phase.PROGRESSING, actor=who)
        tick.note(
            "rollout.step_skipped",
            f"step {status.step_index + 1} ({shown}) let go by {who}{because}",
            actor=who,
        )
        advance(tick, f"promoted by {who}{because}")
    elif command.kind is CommandKind.PROMOTE_FULL:
        promote(tick, f"fully promoted by {who}{because}")
    else:
        aborted = command.kind is CommandKind.ABORT
        verb = "aborted" if aborted else "rolled back"
        outcome = "aborted" if aborted else "rolled_back"
        rollback(tick, f"{verb} by {who}{because}", outcome=outcome)
