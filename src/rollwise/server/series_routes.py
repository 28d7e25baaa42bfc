"""Control API route for a model's metrics over time, which the dashboard charts:
``GET /api/v1/models/{model}/series?window_s=900&step_s=10``.

Every version's figures per step, drift against the stable version, and the routing
and rollout events of the window as marks. The figures are built by
:mod:`rollwise.metrics.series`; reading and merging run in the store's thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rollwise.errors import ValidationError
from rollwise.metrics.series import (
    MAX_POINTS,
    Grid,
    default_step_s,
    mark,
    mark_events,
    rollout_of,
)
from rollwise.runtime.gateway import Gateway
from rollwise.runtime.telemetry import MAX_METRICS_WINDOW_S
from rollwise.server.auth import Principal
from rollwise.server.params import query_int
from rollwise.store.base import Store

DEFAULT_WINDOW_S = 900

MARK_SCAN_LIMIT = 2000
"""The model's newest events looked through for marks: the store pages events by id,
not by time, so the read is bounded by count. A model with more events than this in
the window shows the marks of its newest ones."""


def series_routes(
    gateway: Gateway,
    principal: Callable[[Request, str], Principal],
    handle: Callable[[Callable[[Request], Any]], Callable[[Request], Any]],
    reply: Callable[..., Response],
) -> list[Route]:
    """The route; ``handle`` turns rollwise errors into replies, ``reply`` makes JSON."""

    @handle
    async def series(request: Request) -> Response:
        principal(request, "viewer")
        name = request.path_params["model"]
        model = gateway.model(name)
        window_s, step_s = _window_and_step(request)
        grid = Grid.covering(gateway.clock(), window_s, step_s)
        routing = gateway.routings.get(name)
        stable = routing.stable if routing is not None else model.stable
        found = await gateway.telemetry.version_series(
            name, grid, stable=stable, task=model.task, order=list(model.versions)
        )
        marks = await gateway.db(read_marks, gateway.store, name, grid.first_s, grid.until_s)
        return reply({"model": name, "window_s": window_s, **found.to_dict(), "marks": marks})

    return [Route("/api/v1/models/{model}/series", series, methods=["GET"])]


def _window_and_step(request: Request) -> tuple[int, int]:
    """``window_s`` (at most ``MAX_METRICS_WINDOW_S``) and ``step_s`` (by default about
    ``DEFAULT_POINTS`` steps; at most ``MAX_POINTS``), each refused with a message that
    names its limit."""
    window_s = query_int(request, "window_s", DEFAULT_WINDOW_S, 1, 2**62)
    if window_s > MAX_METRICS_WINDOW_S:
        raise ValidationError(
            f"query parameter window_s={window_s} is over the limit of "
            f"{MAX_METRICS_WINDOW_S} s ({MAX_METRICS_WINDOW_S // 86400} days)"
        )
    step_s = query_int(request, "step_s", default_step_s(window_s), 1, 2**62)
    if window_s > MAX_POINTS * step_s:
        smallest = -(-window_s // MAX_POINTS)
        raise ValidationError(
            f"query parameter step_s={step_s} cuts window_s={window_s} into "
            f"{-(-window_s // step_s)} steps, over the limit of {MAX_POINTS}; "
            f"use step_s={smallest} or more"
        )
    return window_s, step_s


def read_marks(store: Store, model: str, since_s: float, until_s: float) -> list[dict[str, Any]]:
    """The marks of ``model`` between the times, each rollout's candidate read from its
    stored spec; runs in the store's thread."""
    chosen = mark_events(store.list_events(model, 0, MARK_SCAN_LIMIT, True), since_s, until_s)
    candidates: dict[int, str] = {}
    for rollout in {r for r in map(rollout_of, chosen) if r is not None}:
        row = store.get_rollout(rollout)
        candidate = row.spec.get("candidate") if row is not None else None
        if isinstance(candidate, str):
            candidates[rollout] = candidate
    return [mark(event, candidates) for event in chosen]
