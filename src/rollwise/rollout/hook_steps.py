"""What a tick decides at a hook step, and the JSON every hook call carries.

The controller starts a hook step's call and hands its :class:`HookOutcome` to the
state machine in a later tick (:class:`~rollwise.rollout.machine.Evidence`); this module
is the pure part:

- ``webhook`` (and the ``pre_rollout`` / ``pre_promotion`` hooks compiled into it):
  a 2xx lets the step go; anything else, after the retries, rolls back or pauses as
  ``on_failure`` says, with what the hook answered in the reason. No outcome yet: wait.
- ``confirm``: a 2xx lets the step go; other answers keep it waiting (an event each time
  the answer changes); after ``max_wait_s`` without a 2xx it pauses or rolls back as
  ``on_timeout`` says. A person's ``promote`` lets it go at any time.

An outcome counts only for the step that started it (same index and start time), so a
late answer never lets another step go.
"""

from __future__ import annotations

from typing import Any

from rollwise.rollout.hooks import Confirm, HookKind, HookOutcome, OnFailure, Webhook
from rollwise.rollout.spec import RolloutSpec
from rollwise.rollout.status import Phase, RolloutStatus
from rollwise.rollout.steps import describe_step
from rollwise.rollout.tick import Tick, advance, rollback

HOOK_EVENT = "rollout.hook"
_CONFIRM_SEEN = "confirm_answer"
"""Key in ``RolloutStatus.extra``: the confirm hook's last answer, so that an event is
written when it changes, not at every poll."""


def hook_payload(
    spec: RolloutSpec,
    status: RolloutStatus,
    kind: HookKind,
    *,
    rollout_id: int | None,
    now: float,
) -> dict[str, Any]:
    """The JSON a hook is POSTed: the model, both versions, the phase, the step and the
    latest judgement. Documented in the README; hooks should be idempotent (a new
    controller leader may call one again)."""
    index = min(status.step_index, len(spec.steps))
    step = spec.steps[index] if index < len(spec.steps) else None
    return {
        "hook": kind.value,
        "rollout_id": rollout_id,
        "model": status.model,
        "stable": status.stable,
        "candidate": status.candidate,
        "strategy": spec.strategy.value,
        "phase": status.phase.value,
        "outcome": status.outcome,
        "message": status.message,
        "weight": status.weight,
        "mirror": status.mirror,
        "step": {
            "index": index,
            "number": index + 1 if step is not None else None,
            "of": len(spec.steps),
            "description": describe_step(step) if step is not None else None,
        },
        "judgement": dict(status.judgement or {}),
        "sent_at_s": now,
    }


def hook_label(step: Webhook | Confirm) -> str:
    if isinstance(step, Confirm):
        return "confirm hook"
    return {
        HookKind.PRE_ROLLOUT: "pre-rollout hook",
        HookKind.PRE_PROMOTION: "pre-promotion hook",
    }.get(step.kind, "webhook")


def _belongs(outcome: HookOutcome | None, status: RolloutStatus) -> bool:
    return (
        outcome is not None
        and outcome.step_index == status.step_index
        and outcome.step_started_s == status.step_started_s
    )


def wait_for_hook(tick: Tick, step: Webhook | Confirm, outcome: HookOutcome | None) -> None:
    """The rules in the module docstring, for the current step ``step``."""
    mine = outcome if _belongs(outcome, tick.status) else None
    if isinstance(step, Webhook):
        _webhook(tick, step, mine)
    else:
        _confirm(tick, step, mine)


def _note(tick: Tick, step: Webhook | Confirm, outcome: HookOutcome, message: str) -> None:
    kind = step.kind.value if isinstance(step, Webhook) else HookKind.CONFIRM.value
    tick.note(HOOK_EVENT, message, hook=kind, **outcome.to_dict())


def _webhook(tick: Tick, step: Webhook, outcome: HookOutcome | None) -> None:
    if outcome is None:
        return
    label = hook_label(step)
    if outcome.ok:
        why = f"{label} passed: {outcome.answer()}"
        _note(tick, step, outcome, why)
        advance(tick, why)
        return
    why = f"{label} failed: {outcome.answer()}"
    _note(tick, step, outcome, why)
    _give_up(tick, step.on_failure, why, outcome)


def _confirm(tick: Tick, step: Confirm, outcome: HookOutcome | None) -> None:
    if outcome is not None and outcome.ok:
        why = f"confirmed: {outcome.answer()}"
        _note(tick, step, outcome, why)
        advance(tick, why)
        return
    if outcome is not None:
        seen = f"{tick.status.step_index}:{outcome.status_code}:{outcome.error}"
        if (tick.status.extra or {}).get(_CONFIRM_SEEN) != seen:
            tick.set(extra={**(tick.status.extra or {}), _CONFIRM_SEEN: seen})
            _note(tick, step, outcome, f"waiting for confirmation: {outcome.answer()}")
    elapsed_s = tick.now - tick.status.step_started_s
    if step.max_wait_s is not None and elapsed_s >= step.max_wait_s:
        last = outcome.answer() if outcome is not None else "no answer yet"
        why = f"not confirmed within {step.max_wait_s:g} s (last: {last})"
        _give_up(tick, step.on_timeout, why, outcome)


def _give_up(tick: Tick, action: OnFailure, why: str, outcome: HookOutcome | None) -> None:
    figures = outcome.to_dict() if outcome is not None else None
    if action is OnFailure.PAUSE:
        # No paused_elapsed_s: a resume starts the step anew, calling the hook again.
        tick.set(phase=Phase.PAUSED, message=f"paused: {why}", actor="controller")
        tick.note("rollout.paused", f"paused for a person to decide: {why}", hook=figures)
    else:
        rollback(tick, why, hook=figures)
