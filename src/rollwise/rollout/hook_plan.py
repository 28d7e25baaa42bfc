"""Where a spec's lifecycle hooks go among its steps.

``pre_rollout`` hooks become :class:`~rollwise.rollout.hooks.Webhook` steps before the
first step, so they run before any user traffic (or mirror) reaches the candidate;
``pre_promotion`` hooks become steps before the step that gives the candidate all the
traffic (the first ``set_weight: 100`` or ``switch``), or after the last step when none
does (an A/B test promotes its winner at the end). Both roll back when they fail.
"""

from __future__ import annotations

from rollwise.errors import ConfigError
from rollwise.rollout.hooks import HookKind, LifecycleHooks, OnFailure, Webhook
from rollwise.rollout.steps import SetWeight, Step, Switch


def with_lifecycle_hooks(
    steps: list[Step], hooks: LifecycleHooks, *, promotes: bool, where: str
) -> list[Step]:
    """``steps`` with the hooks that gate the rollout inserted as steps."""
    if hooks.pre_promotion and not promotes:
        raise ConfigError(
            f"{where}.pre_promotion: this rollout never promotes (its steps give the "
            "candidate no live traffic; it ends validated), so the hook would never run"
        )
    before = [Webhook(call, OnFailure.ROLLBACK, HookKind.PRE_ROLLOUT) for call in hooks.pre_rollout]
    gate = [
        Webhook(call, OnFailure.ROLLBACK, HookKind.PRE_PROMOTION) for call in hooks.pre_promotion
    ]
    at = next(
        (
            i
            for i, step in enumerate(steps)
            if isinstance(step, Switch) or (isinstance(step, SetWeight) and step.weight >= 100)
        ),
        len(steps),
    )
    return [*before, *steps[:at], *gate, *steps[at:]]
