"""Control API routes for rollouts: apply, list, show, and a person's commands.

``POST /api/v1/rollouts`` takes the same spec as ``rollwise apply -f`` (as JSON);
``?replace=true`` aborts a rollout in progress in the same transaction, ``?dry_run=true``
checks the spec and shows its steps without starting it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rollwise.domain import Role
from rollwise.errors import ValidationError
from rollwise.rollout import Command, CommandKind
from rollwise.rollout.preview import preview_steps, traffic_rates
from rollwise.runtime.gateway import Gateway
from rollwise.server.auth import Principal
from rollwise.server.params import query_flag, read_json, validated

RATE_WINDOW_S = 300.0
"""A dry run estimates an A/B test's duration from the traffic of this many seconds."""

ACTIONS = {
    "pause": CommandKind.PAUSE,
    "resume": CommandKind.RESUME,
    "promote": CommandKind.PROMOTE,
    "abort": CommandKind.ABORT,
    "rollback": CommandKind.ROLLBACK,
}


class CommandBody(BaseModel):
    """Optional body of a rollout command."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=500, description="why, recorded in the event")
    full: StrictBool = Field(
        False, description="promote only: make the candidate stable now, skipping every step"
    )


def rollout_routes(
    gateway: Gateway,
    principal: Callable[[Request, str], Principal],
    handle: Callable[[Callable[[Request], Any]], Callable[[Request], Any]],
    reply: Callable[..., Response],
    body_limit: int,
) -> list[Route]:
    """The routes; ``handle`` turns rollwise errors into replies, ``reply`` makes JSON,
    and no body over ``body_limit`` bytes is read."""

    @handle
    async def list_rollouts(request: Request) -> Response:
        principal(request, "viewer")
        model = request.query_params.get("model")
        if model is not None:
            gateway.model(model)
        active = query_flag(request, "active")
        found = await gateway.db(partial(gateway.rollouts.list, model, active_only=active))
        return reply({"rollouts": [r.to_dict() for r in found]})

    @handle
    async def apply(request: Request) -> Response:
        who = principal(request, "operator")
        spec = await read_json(request, body_limit)
        if query_flag(request, "dry_run"):
            checked = await gateway.db(gateway.rollouts.check, spec)
            windows = await gateway.telemetry.version_metrics(checked.model, RATE_WINDOW_S)
            totals: dict[str, tuple[int, int]] = {}
            for (version, role), window in windows.items():
                if role is Role.SERVED:
                    totals[version] = (window.requests, window.feedback)
            requests_per_s, labels_per_s = traffic_rates(totals, RATE_WINDOW_S)
            result: dict[str, Any] = {
                "dry_run": True,
                "summary": checked.summary(),
                "steps": [step.to_dict() for step in checked.steps],
                "plan": preview_steps(checked, requests_per_s, labels_per_s),
                "requests_per_s": requests_per_s,
                "labels_per_s": labels_per_s,
                "rate_window_s": RATE_WINDOW_S,
            }
            # A breaking difference was refused by check(); what passes is still shown.
            interface = await gateway.db(gateway.rollouts.interface, checked)
            if interface is not None and interface.lines():
                result["interface"] = interface.to_dict()
            return reply(result)
        replace = query_flag(request, "replace")
        rollout = await gateway.db(
            partial(gateway.rollouts.apply, spec, actor=who.name, replace=replace)
        )
        await gateway.refresh_routing()
        return reply(rollout.to_dict(), status_code=201)

    @handle
    async def show(request: Request) -> Response:
        principal(request, "viewer")
        model = request.path_params["model"]
        gateway.model(model)
        rollout = await gateway.db(gateway.rollouts.get, model)
        return reply(rollout.to_dict())

    @handle
    async def act(request: Request) -> Response:
        who = principal(request, "operator")
        model, action = request.path_params["model"], request.path_params["action"]
        gateway.model(model)
        kind = ACTIONS.get(action)
        if kind is None:
            raise ValidationError(
                f"unknown rollout action {action!r} (actions: {', '.join(ACTIONS)})"
            )
        # The body is optional: a bare POST is the command with no reason.
        body = validated(CommandBody, await read_json(request, body_limit, optional=True))
        if body.full and kind is not CommandKind.PROMOTE:
            raise ValidationError("'full' applies to promote only")
        if body.full:
            kind = CommandKind.PROMOTE_FULL
        command = Command(kind, who.name, body.reason)
        if kind is CommandKind.ROLLBACK:
            # After a promotion the previous stable may have been unloaded: it is
            # loaded again on every replica first, and the switch waits for that.
            await gateway.prepare_rollback(model, who.name)
        rollout = await gateway.db(gateway.rollouts.command, model, command)
        await gateway.refresh_routing()
        return reply(rollout.to_dict())

    return [
        Route("/api/v1/rollouts", list_rollouts, methods=["GET"]),
        Route("/api/v1/rollouts", apply, methods=["POST"]),
        Route("/api/v1/rollouts/{model}", show, methods=["GET"]),
        Route("/api/v1/rollouts/{model}/{action}", act, methods=["POST"]),
    ]
