"""The control API (JSON under /api/v1) and the OIP metadata and health routes.

Reads need a viewer token, changes an operator token, unless the server runs with
``--insecure-dev`` on loopback. Every ``/api/v1`` request first passes the guard in
:mod:`rollwise.server.guard` (Host, Origin, JSON bodies, the body limit), and every
body is read through :func:`rollwise.server.params.read_body`. Request bodies are
checked with pydantic models whose JSON schemas also document the API in
``/api/v1/openapi.json``.

``GET /v2/models/{m}`` describes the version the caller would be routed to, chosen as
the data plane chooses it, so that versions with different interfaces each tell their
own users the names to use.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

import rollwise
from rollwise.domain import BUCKETS, VersionHealth
from rollwise.errors import RollwiseError, ValidationError
from rollwise.metrics.prometheus import GatewayCollector, Replica, render
from rollwise.routing import known_version
from rollwise.runtime.gateway import Gateway
from rollwise.runtime.telemetry import MAX_METRICS_WINDOW_S
from rollwise.server.auth import Authenticator, Principal
from rollwise.server.dataplane import DataPlane, Receive, Scope, Send
from rollwise.server.errors import error_reply
from rollwise.server.gc_policy import GC_PAUSES
from rollwise.server.guard import ControlGuard, control_body_limit
from rollwise.server.openapi import openapi_document
from rollwise.server.params import query_flag, query_int, read_json, validated
from rollwise.server.rollout_routes import rollout_routes
from rollwise.server.series_routes import series_routes
from rollwise.server.status_view import model_status
from rollwise.server.version_routes import version_routes
from rollwise.ui.routes import ui_routes

log = logging.getLogger("rollwise.server")


class RoutingUpdate(BaseModel):
    """New routing of a model: whole percents per version summing to 100, and mirrors."""

    model_config = ConfigDict(extra="forbid")
    # Strict: true, "90" and 90.0 are refused rather than quietly turned into numbers.
    weights: dict[str, StrictInt] = Field(description="percent of traffic per version; sums to 100")
    mirrors: dict[str, StrictInt] = Field(
        default_factory=dict, description="percent of requests copied to each shadow version"
    )


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _error(error: RollwiseError) -> JSONResponse:
    reply = error_reply(error)
    headers = {"www-authenticate": "Bearer"} if reply.wants_token else None
    return JSONResponse(reply.body, status_code=reply.status, headers=headers)


Handler = Callable[[Request], Awaitable[Response]]


def _handled(handler: Handler) -> Handler:
    """The route, with every rollwise refusal answered by its status and message, and
    any other exception (a bug) logged with its traceback and answered 500 in JSON."""

    async def route(request: Request) -> Response:
        try:
            return await handler(request)
        except RollwiseError as error:
            return _error(error)
        except (HTTPException, ClientDisconnect):
            raise
        except Exception as error:
            log.exception("%s %s failed", request.method, request.url.path)
            return JSONResponse(
                {"error": f"internal error: {type(error).__name__}: {error}"}, status_code=500
            )

    route.__name__ = handler.__name__
    return route


def build_control_app(gateway: Gateway, auth: Authenticator, host: str | None = None) -> Starlette:
    """The control API app; ``host`` is the address the server listens on (default: the
    config's), the one name besides loopback ones that ``--insecure-dev`` answers to."""
    body_limit = control_body_limit(
        gateway.config.server.max_control_body_bytes, gateway.config.server.max_body_bytes
    )
    collector = GatewayCollector(
        gateway.telemetry.totals,
        lambda: _weights(gateway),
        lambda: dict(gateway.telemetry.fallbacks),
        lambda: gateway.telemetry.predictions.dropped_total,
        gc_pauses=lambda: GC_PAUSES,
        # Only a worker of ``serve --workers N`` is given ``on_hangup`` (to ask its
        # supervisor for a rolling restart), and only workers share their port, so their
        # scrape target: each labels its series with its replica id, or a scrape reaching
        # another worker would look to Prometheus like a reset of the same counters.
        replica=Replica(gateway.replica, os.getpid(), label_series=gateway.on_hangup is not None),
        notifications=gateway.notifier.counts,
    )

    def principal(request: Request, role: str) -> Principal:
        return auth.require(request.headers.get("authorization"), role)

    # The data plane's own reading of a sticky key, so that metadata and inference
    # route one caller alike.
    sticky_key = DataPlane(gateway, auth, _nowhere)._sticky

    def routed(request: Request, name: str) -> str:
        table = gateway.tables.get(name)
        if table is None or not table.serving:
            return table.routing.stable if table is not None else gateway.model(name).stable
        # A GET has no body: a sticky key that is a field is read from the query string.
        key = sticky_key(request.scope, name, dict(request.query_params))
        # The table, not serving.choose: reading metadata makes no user of the split
        # and must not be counted as one.
        return table.choose(key, gateway.ctx.rng.randrange(BUCKETS))

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        if gateway.stopping:
            # Load balancers stop sending here while the requests in flight finish.
            return JSONResponse({"ready": False, "reason": "stopping"}, status_code=503)
        is_ready = gateway.started and any(t.serving for t in gateway.tables.values())
        return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)

    async def server_metadata(request: Request) -> Response:
        return JSONResponse({"name": "rollwise", "version": rollwise.__version__, "extensions": []})

    async def model_metadata(request: Request) -> Response:
        """OIP model metadata of one version, named in ``X-Rollwise-Version``.

        ``/v2/models/{m}/versions/{v}`` describes v. ``/v2/models/{m}`` describes the
        version an inference request from the same caller would reach: by the model's
        sticky key (a field key given in the query string), else drawn by weight like
        an inference without a key, so that two such calls may describe different
        versions while a rollout splits the traffic — the honest answer when the
        rollout allows their interfaces to differ.
        """
        try:
            name = request.path_params["model"]
            model = gateway.model(name)
            version = request.path_params.get("version")
            chosen = version if version is not None else routed(request, name)
            known_version(model, chosen)
            backend = gateway.backends.get((name, chosen))
            meta = backend.metadata() if backend is not None and backend.ready() else None
            body: dict[str, Any] = {
                "name": name,
                "version": chosen,
                "versions": list(model.versions),
                "platform": meta.platform if meta else "",
                "inputs": [t.to_json() for t in meta.inputs] if meta else [],
                "outputs": [t.to_json() for t in meta.outputs] if meta else [],
            }
            headers = {"x-rollwise-version": chosen}
            if version is None:
                # Another caller may be told another version: no cache may share it.
                headers["cache-control"] = "no-store"
            return JSONResponse(body, headers=headers)
        except RollwiseError as error:
            return _error(error)

    async def model_ready(request: Request) -> Response:
        try:
            name = request.path_params["model"]
            model = gateway.model(name)
            version = request.path_params.get("version")
            if version is not None:
                known_version(model, version)
                state = gateway.states.get((name, version))
                is_ready = state is not None and state.health is VersionHealth.READY
            else:
                table = gateway.tables.get(name)
                is_ready = bool(table and table.serving)
            return JSONResponse(
                {"name": name, "ready": is_ready}, status_code=200 if is_ready else 503
            )
        except RollwiseError as error:
            return _error(error)

    async def metrics(request: Request) -> Response:
        return Response(render(collector), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def list_models(request: Request) -> Response:
        try:
            principal(request, "viewer")
            window_s = _window(request)
            models = [await model_status(gateway, name, window_s) for name in gateway.models]
            return JSONResponse({"models": models})
        except RollwiseError as error:
            return _error(error)

    async def get_model(request: Request) -> Response:
        try:
            principal(request, "viewer")
            return JSONResponse(
                await model_status(gateway, request.path_params["model"], _window(request))
            )
        except RollwiseError as error:
            return _error(error)

    async def put_routing(request: Request) -> Response:
        try:
            who = principal(request, "operator")
            data = await read_json(request, body_limit)
            update = validated(RoutingUpdate, data)
            force = query_flag(request, "force")
            routing = await gateway.set_routing(
                request.path_params["model"],
                update.weights,
                update.mirrors,
                actor=who.name,
                force=force,
            )
            return JSONResponse(routing.to_dict())
        except RollwiseError as error:
            return _error(error)

    async def reload_version(request: Request) -> Response:
        try:
            who = principal(request, "operator")
            model, version = request.path_params["model"], request.path_params["version"]
            state = await gateway.reload_version(model, version, actor=who.name)
            return JSONResponse({"model": model, "version": version, "health": state.health.value})
        except RollwiseError as error:
            return _error(error)

    async def reload_config(request: Request) -> Response:
        """Read the config file again: 200 with what changed, once it applies here.

        In a worker of ``serve --workers`` (the gateway has ``on_hangup``), reloading
        this worker alone would leave its siblings on the old config, so the request
        goes to the supervisor, as SIGHUP does, and the answer is 202 at once: the
        workers are restarted one at a time with the config read again, and the
        ``workers.restarted`` event marks the end (``workers.restart_refused`` a bad
        config, ``workers.restart_failed`` a new worker that died).
        """
        who = principal(request, "operator")
        if gateway.on_hangup is not None:
            log.info("config reload asked by %s: passed on to the supervisor", who.name)
            gateway.on_hangup()
            return JSONResponse(
                {
                    "restarting": True,
                    "message": "every worker restarts, one at a time, with the config "
                    "read again; the workers.restarted event marks the end",
                },
                status_code=202,
            )
        changes = await gateway.reload_config(actor=who.name)
        return JSONResponse({"reloaded": True, "changes": changes})

    async def events(request: Request) -> Response:
        try:
            principal(request, "viewer")
            model = request.query_params.get("model")
            if model is not None:
                gateway.model(model)
            after_id = query_int(request, "after_id", 0, 0, 2**62)
            limit = query_int(request, "limit", 100, 1, 1000)
            latest = query_flag(request, "latest")
            found = await gateway.db(gateway.store.list_events, model, after_id, limit, latest)
            return JSONResponse({"events": [e.to_dict() for e in found]})
        except RollwiseError as error:
            return _error(error)

    async def whoami(request: Request) -> Response:
        try:
            who = principal(request, "viewer")
            return JSONResponse({"name": who.name, "role": who.role})
        except RollwiseError as error:
            return _error(error)

    document = orjson.dumps(openapi_document(RoutingUpdate))

    async def openapi(request: Request) -> Response:
        return Response(document, media_type="application/json")

    routes = [
        Route("/v2", _handled(server_metadata)),
        Route("/v2/health/live", _handled(live)),
        Route("/v2/health/ready", _handled(ready)),
        Route("/v2/models/{model}", _handled(model_metadata)),
        Route("/v2/models/{model}/ready", _handled(model_ready)),
        Route("/v2/models/{model}/versions/{version}", _handled(model_metadata)),
        Route("/v2/models/{model}/versions/{version}/ready", _handled(model_ready)),
        Route("/metrics", _handled(metrics)),
        Route("/api/v1/models", _handled(list_models)),
        Route("/api/v1/models/{model}", _handled(get_model)),
        Route("/api/v1/models/{model}/routing", _handled(put_routing), methods=["PUT"]),
        Route(
            "/api/v1/models/{model}/versions/{version}/reload",
            _handled(reload_version),
            methods=["POST"],
        ),
        Route("/api/v1/config/reload", _handled(reload_config), methods=["POST"]),
        Route("/api/v1/events", _handled(events)),
        Route("/api/v1/whoami", _handled(whoami)),
        Route("/api/v1/openapi.json", _handled(openapi)),
        *rollout_routes(gateway, principal, _handled, JSONResponse, body_limit),
        *series_routes(gateway, principal, _handled, JSONResponse),
        *version_routes(gateway, principal, _handled, JSONResponse, body_limit),
        *ui_routes(),
    ]

    async def no_route(request: Request, error: Exception) -> Response:
        status = getattr(error, "status_code", 404)
        if status == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = f"no such endpoint: {request.method} {request.url.path}"
        return JSONResponse({"error": message}, status_code=status)

    guard = Middleware(
        ControlGuard,
        insecure_dev=auth.insecure_dev,
        host=host or gateway.config.server.host,
        max_body_bytes=body_limit,
    )
    return Starlette(
        routes=routes,
        middleware=[guard],
        exception_handlers={404: no_route, 405: no_route},
    )


async def _nowhere(scope: Scope, receive: Receive, send: Send) -> None:
    """The data plane's fallback where only its reading of sticky keys is used."""


def _window(request: Request) -> float:
    """The metrics window of a status read, at most ``MAX_METRICS_WINDOW_S`` (422
    beyond, naming the limit): its cost grows with the buckets it covers."""
    window_s = query_int(request, "window_s", 300, 1, 2**62)
    if window_s > MAX_METRICS_WINDOW_S:
        raise ValidationError(
            f"query parameter window_s={window_s} is over the limit of "
            f"{MAX_METRICS_WINDOW_S} s ({MAX_METRICS_WINDOW_S // 86400} days)"
        )
    return float(window_s)


def _weights(gateway: Gateway) -> dict[tuple[str, str], tuple[int, int, bool]]:
    result: dict[tuple[str, str], tuple[int, int, bool]] = {}
    for name, model in gateway.models.items():
        routing = gateway.routings.get(name)
        for version in model.versions:
            state = gateway.states.get((name, version))
            result[(name, version)] = (
                routing.weight_of(version) if routing else 0,
                routing.mirrors.get(version, 0) if routing else 0,
                state is not None and state.health is VersionHealth.READY,
            )
    return result
