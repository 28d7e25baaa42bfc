"""Pure rollout logic: specs and presets compiled into steps, and the state machine.

* ``steps``: the step vocabulary (``set_weight``, ``mirror``, ``pause``, ``analyze``,
  ``experiment``, ``preview``, ``switch``);
* ``spec``: :func:`parse_rollout_spec`, the six strategies checked and compiled;
* ``status``: :class:`Phase` and :class:`RolloutStatus`;
* ``machine``: :func:`start` and :func:`decide`, one tick at a time;
* ``tick``: the decision being built, moving on and ending; ``commands``: a person's
  commands (pause, resume, promote, abort, rollback);
* ``evidence``: metric windows judged into the :class:`Evidence` a tick needs.
"""

from rollwise.rollout.evidence import arm_summary, gather
from rollwise.rollout.machine import (
    Command,
    CommandKind,
    Decision,
    Evidence,
    Note,
    RoutingPlan,
    decide,
    halt,
    routing_for,
    start,
)
from rollwise.rollout.spec import (
    OnInconclusive,
    RollbackPolicy,
    RolloutSpec,
    Strategy,
    linear_weights,
    parse_rollout_spec,
)
from rollwise.rollout.status import Phase, RolloutStatus
from rollwise.rollout.steps import (
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

__all__ = [
    "Analyze",
    "Command",
    "CommandKind",
    "Decision",
    "Evidence",
    "Experiment",
    "MirrorStep",
    "Note",
    "OnInconclusive",
    "Pause",
    "Phase",
    "Preview",
    "RollbackPolicy",
    "RolloutSpec",
    "RolloutStatus",
    "RoutingPlan",
    "SetWeight",
    "Step",
    "Strategy",
    "Switch",
    "arm_summary",
    "decide",
    "describe_step",
    "gather",
    "halt",
    "linear_weights",
    "parse_rollout_spec",
    "routing_for",
    "start",
]
