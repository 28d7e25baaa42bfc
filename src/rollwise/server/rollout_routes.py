"""Control API routes for rollouts: apply, list, show, and a person's commands.

``POST /api/v1/rollouts`` takes the same spec as ``rollwise apply -f``: as JSON, or as
YAML text in a JSON body ``{"yaml": "..."}`` (what the dashboard sends when an operator
pastes a spec; the body stays JSON, which the guard's CSRF check needs), parsed here as
the CLI parses a spec file. ``?replace=true`` aborts a rollout in progress in the same
transaction, ``?dry_run=true`` checks the spec and shows its steps without starting it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.concurrency import run_in_threadpool
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


YAML_KEY = "yaml"
"""The one key of a body that carries a rollout spec as YAML text."""

MAX_SPEC_YAML_CHARS = 64 * 1024
"""The longest YAML spec taken: real ones are a few KB, and ``yaml.safe_load`` parses in
pure Python (libyaml or not), at about a megabyte a second."""

# Bounds on the parsed spec: YAML aliases let a short text stand for a huge or endless
# (self-referencing) structure, which a JSON body cannot, and which checking or storing
# the spec would then walk. Real specs hold a few hundred values, a few levels deep.
MAX_SPEC_NODES = 10_000
MAX_SPEC_DEPTH = 32


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
        if YAML_KEY in spec:
            # Off the event loop: PyYAML is pure Python where libyaml is missing.
            spec = await run_in_threadpool(spec_from_yaml_body, spec)
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
        # The gateway's clock, so that a reader tells how long a step has run by the
        # same clock that stamped it, not by its own.
        return reply({**rollout.to_dict(), "now_s": gateway.clock()})

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


def spec_from_yaml_body(body: dict[str, Any]) -> dict[str, Any]:
    """The rollout spec in a body ``{"yaml": text}``, parsed with ``yaml.safe_load`` as
    ``rollwise apply -f`` reads a file; ``ValidationError`` (422) that says what is wrong,
    with the line and column of a syntax error."""
    if set(body) != {YAML_KEY}:
        others = ", ".join(repr(k) for k in sorted(body) if k != YAML_KEY)
        raise ValidationError(
            f'a YAML spec is sent as {{"yaml": "<text>"}} and nothing else; '
            f"the body also has {others}"
        )
    text = body[YAML_KEY]
    if not isinstance(text, str):
        raise ValidationError(f"'yaml' must be the spec's YAML text, not {_kind(text)}")
    if len(text) > MAX_SPEC_YAML_CHARS:
        raise ValidationError(
            f"the YAML spec has {len(text)} characters; at most {MAX_SPEC_YAML_CHARS} are taken"
        )
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        raise ValidationError(f"the YAML spec is not valid YAML: {_yaml_problem(error)}") from None
    except yaml.reader.ReaderError as error:
        raise ValidationError(
            f"the YAML spec is not valid YAML: {_unreadable(text, error)}"
        ) from None
    except yaml.YAMLError as error:
        raise ValidationError(f"the YAML spec is not valid YAML: {error}") from None
    except RecursionError:
        raise ValidationError("the YAML spec is nested too deeply") from None
    if data is None:
        raise ValidationError(
            "the YAML spec is empty: write the rollout's model, candidate and strategy"
        )
    if not isinstance(data, dict):
        raise ValidationError(
            f"the YAML spec must be a mapping (model: ..., candidate: ..., strategy: ...), "
            f"not {_kind(data)}"
        )
    _check_json_like(data)
    return data


def _yaml_problem(error: yaml.MarkedYAMLError) -> str:
    """``line L, column C: what is wrong`` (both counted from 1, as editors do)."""
    mark = error.problem_mark or error.context_mark
    what = error.problem or error.context or "cannot be read"
    if error.context and error.problem and error.context not in what:
        what = f"{what} ({error.context})"
    if mark is None:
        return what
    return f"line {mark.line + 1}, column {mark.column + 1}: {what}"


def _unreadable(text: str, error: yaml.reader.ReaderError) -> str:
    """Where a character YAML does not allow is, as ``line L, column C: ...``."""
    position = max(0, min(int(error.position), len(text)))
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    code = error.character if isinstance(error.character, int) else ord(error.character)
    return f"line {line}, column {column}: the character U+{code:04X} is not allowed in YAML"


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def _check_json_like(data: dict[str, Any]) -> None:
    """Refuse what a JSON spec could not hold, naming where it is: keys that are not
    text (YAML reads ``on:`` as true), values such as dates, non-finite numbers, and
    structures too large or deep (aliases)."""
    nodes = 0
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        nodes += 1
        if nodes > MAX_SPEC_NODES or depth > MAX_SPEC_DEPTH:
            raise ValidationError(
                f"the YAML spec is too large once its aliases are expanded (at most "
                f"{MAX_SPEC_NODES} values, {MAX_SPEC_DEPTH} levels deep)"
            )
        place = where or "the top level"
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise ValidationError(
                        f"the YAML spec has a key {key!r} at {place} that is not text; quote it"
                    )
                stack.append((item, f"{where}.{key}" if where else key, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValidationError(f"the YAML spec's {place} is {value}; numbers must be finite")
        elif not isinstance(value, str | int | float | bool) and value is not None:
            raise ValidationError(
                f"the YAML spec's {place} is {_kind(value)}, which a spec cannot hold; "
                "quote it to give it as text"
            )
