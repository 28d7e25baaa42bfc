"""Control API routes for live versions, runtime models and the fleet of replicas.

``PUT /api/v1/models/{m}/versions/{v}`` registers a version with its spec as in the
config (201 new, 200 the same spec again, 409 a different spec under that name);
``DELETE`` retires it (409 saying why while it serves); ``PUT /api/v1/models/{m}``
creates a model; ``GET /api/v1/replicas`` lists the gateway processes of the fleet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rollwise.domain import RegisteredVersion, Replica, ReplicaVersion
from rollwise.errors import NotFound, ValidationError
from rollwise.fleet import fleet_readiness, replica_live
from rollwise.runtime.gateway import Gateway
from rollwise.secrets_env import mask_option_headers
from rollwise.server.auth import Principal
from rollwise.server.params import read_json
from rollwise.server.status_view import fleet_view


def version_routes(
    gateway: Gateway,
    principal: Callable[[Request, str], Principal],
    handle: Callable[[Callable[[Request], Any]], Callable[[Request], Any]],
    reply: Callable[..., Response],
    body_limit: int,
) -> list[Route]:
    """The routes; ``handle`` turns rollwise errors into replies, ``reply`` makes JSON,
    and no body over ``body_limit`` bytes is read."""

    async def fleet_state() -> tuple[list[Replica], list[ReplicaVersion]]:
        replicas = await gateway.db(gateway.store.list_replicas)
        states = await gateway.db(gateway.store.list_replica_versions)
        return replicas, states

    async def views(found: Sequence[RegisteredVersion]) -> list[dict[str, Any]]:
        replicas, states = await fleet_state()
        return [version_view(gateway, v, replicas, states) for v in found]

    @handle
    async def list_versions(request: Request) -> Response:
        principal(request, "viewer")
        model = request.path_params.get("model") or request.query_params.get("model")
        if model is not None:
            gateway.model(model)
        found = await gateway.db(gateway.store.list_versions, model)
        return reply({"versions": await views(found)})

    @handle
    async def show_version(request: Request) -> Response:
        principal(request, "viewer")
        model, name = request.path_params["model"], request.path_params["version"]
        gateway.model(model)
        found = await gateway.db(gateway.store.get_version, model, name)
        if found is None:
            raise NotFound(f"model {model!r} has no version {name!r}")
        return reply((await views([found]))[0])

    @handle
    async def put_version(request: Request) -> Response:
        who = principal(request, "operator")
        model, name = request.path_params["model"], request.path_params["version"]
        body = await read_json(request, body_limit)
        if not isinstance(body, dict):
            raise ValidationError("the body must be a JSON object: the version's spec")
        registered = await gateway.register_version(model, name, body, actor=who.name)
        view = (await views([registered.version]))[0]
        return reply(
            {"created": registered.created, "version": view},
            status_code=201 if registered.created else 200,
        )

    @handle
    async def delete_version(request: Request) -> Response:
        who = principal(request, "operator")
        model, name = request.path_params["model"], request.path_params["version"]
        retired = await gateway.retire_version(model, name, actor=who.name)
        return reply({"retired": (await views([retired]))[0]})

    @handle
    async def put_model(request: Request) -> Response:
        who = principal(request, "operator")
        name = request.path_params["model"]
        body = await read_json(request, body_limit)
        if not isinstance(body, dict):
            raise ValidationError("the body must be a JSON object: the model's spec")
        created = await gateway.create_model(name, body, actor=who.name)
        from rollwise.server.status_view import model_status

        status = await model_status(gateway, name, 300.0)
        return reply({"created": created, "model": status}, status_code=201 if created else 200)

    @handle
    async def list_replicas(request: Request) -> Response:
        principal(request, "viewer")
        replicas, states = await fleet_state()
        now = gateway.clock()
        timeout_s = gateway.config.server.heartbeat_timeout_s
        listed = []
        for replica in replicas:
            listed.append(
                {
                    "id": replica.id,
                    "host": replica.host,
                    "pid": replica.pid,
                    "started_at_s": replica.started_at_s,
                    "last_seen_s": replica.last_seen_s,
                    "rollwise_version": replica.rollwise_version,
                    "live": replica_live(replica, now, timeout_s),
                    "stopped": replica.stopped,
                    "this": replica.id == gateway.replica,
                    "versions": {
                        f"{s.model}/{s.version}": s.health.value
                        for s in states
                        if s.replica == replica.id
                    },
                }
            )
        return reply({"replicas": listed, "heartbeat_timeout_s": timeout_s})

    return [
        Route("/api/v1/versions", list_versions, methods=["GET"]),
        Route("/api/v1/replicas", list_replicas, methods=["GET"]),
        Route("/api/v1/models/{model}", put_model, methods=["PUT"]),
        Route("/api/v1/models/{model}/versions", list_versions, methods=["GET"]),
        Route("/api/v1/models/{model}/versions/{version}", show_version, methods=["GET"]),
        Route("/api/v1/models/{model}/versions/{version}", put_version, methods=["PUT"]),
        Route("/api/v1/models/{model}/versions/{version}", delete_version, methods=["DELETE"]),
    ]


def version_view(
    gateway: Gateway,
    version: RegisteredVersion,
    replicas: Sequence[Replica],
    states: Sequence[ReplicaVersion],
) -> dict[str, Any]:
    """A registered version with its state on every replica and across the fleet.

    Viewers read this, and a ``headers`` option may hold an upstream's API key, so its
    values are masked (in ``requested`` too, which keeps the options as written)."""
    readiness = fleet_readiness(
        version.model,
        version.name,
        replicas,
        states,
        gateway.clock(),
        gateway.config.server.heartbeat_timeout_s,
    )
    return {
        "model": version.model,
        "name": version.name,
        "backend": version.spec.backend,
        "options": mask_option_headers(version.spec.options),
        "requested": mask_option_headers(version.requested),
        "source": version.source.value,
        "spec_sha256": version.spec_sha256,
        "artifact_sha256": version.artifact_sha256,
        "resolved": dict(version.resolved),
        "registered_at_s": version.registered_at_s,
        "keep_loaded": version.keep_loaded,
        "fleet": fleet_view(readiness),
        "replicas": [
            {
                "replica": s.replica,
                "health": s.health.value,
                "error": s.error,
                "artifact_sha256": s.artifact_sha256,
                "updated_at_s": s.updated_at_s,
            }
            for s in states
            if s.model == version.model and s.version == version.name
        ],
    }
