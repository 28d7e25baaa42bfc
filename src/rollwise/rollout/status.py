"""Where a rollout stands: its phase, its step, the weights it set and why.

A :class:`RolloutStatus` is an immutable value; the state machine returns a new one
and the store keeps it as JSON (``to_dict`` / ``from_dict``), so a controller that
restarts reads back exactly where the previous one stopped.

An A/B test that ends without a winner ends in a phase of its own, ``no_difference``
or ``inconclusive``: the stable version stays, as after a rollback, but nothing was
wrong with the candidate. Older rollwise wrote both as phase ``rolled_back`` with
outcome ``no_difference``; such statuses read back as they were stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    PENDING = "pending"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    NO_DIFFERENCE = "no_difference"
    """An A/B test found the versions equivalent within its ``mde``; stable stays."""
    INCONCLUSIVE = "inconclusive"
    """An A/B test ended undecided (planned size or maximum duration); stable stays."""
    VALIDATED = "validated"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        return self in (Phase.PENDING, Phase.PROGRESSING, Phase.PAUSED)


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    """A rollout's state between two controller ticks (times are epoch seconds)."""

    model: str
    stable: str
    candidate: str
    phase: Phase
    started_s: float
    step_index: int = 0
    """The step being run; ``len(steps)`` once all are done."""
    step_started_s: float = 0.0
    measure_since_s: float = 0.0
    """When the current weights and mirrors took effect: gates judge data from here."""
    updated_s: float = 0.0
    weight: int = 0
    """The candidate's percent of user traffic."""
    mirror: int = 0
    """Percent of requests copied to the candidate."""
    preview: bool = False
    failures: int = 0
    """Consecutive failing judgements so far (the rollback policy's failure limit)."""
    message: str = ""
    """Why the rollout is where it is, in one line."""
    outcome: str = ""
    """How it ended: promoted, rolled_back, aborted, validated, failed, no_difference,
    inconclusive."""
    finished_s: float | None = None
    previous_stable: str | None = None
    """After a promotion: the version ``rollback`` returns to."""
    keep_previous_until_s: float | None = None
    judgement: Mapping[str, Any] | None = None
    """The figures of the last judgement (background and step gates, SRM), for people."""
    experiment: Mapping[str, Any] | None = None
    """The A/B step's plan (``samples_per_arm``) and its last decision."""
    paused_elapsed_s: float | None = None
    """Time the current step had run when a person paused it; resuming goes on from there."""
    split_by_user: bool = False
    """Traffic is split by a sticky user key: the sample-ratio check counts users."""
    actor: str = "controller"
    """Who made the last change of phase: the controller, or the person who asked."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["phase"] = self.phase.value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutStatus:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["phase"] = Phase(values["phase"])
        return cls(**values)
