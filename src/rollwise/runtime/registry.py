"""Versions and models registered, retired and brought back while the fleet serves.

Registering is a trust boundary: loading a version runs code on every replica, so a
spec is checked against the config's ``registration`` policy before anything is
stored, and a moving artifact reference (an MLflow alias) is pinned to what it names
now, so that every replica loads the same artifact. Every change is written with its
event in one transaction; replicas pick it up through the state counter they poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from rollwise.config import check_name, parse_sticky_key
from rollwise.domain import Event, ModelSpec, RegisteredVersion, VersionSource, VersionSpec
from rollwise.errors import ConfigError, Conflict, NotFound, ValidationError
from rollwise.fleet import retire_refusal
from rollwise.readiness import StoreReadiness
from rollwise.registration import RegistrationPolicy, check_registration
from rollwise.rollout import RolloutStatus
from rollwise.runtime.context import Context
from rollwise.secrets_env import mask_option_headers
from rollwise.store.base import RolloutRow
from rollwise.store.jsontext import fingerprint

log = logging.getLogger("rollwise.gateway")

TASKS = ("classification", "regression")


@dataclass(frozen=True, slots=True)
class Registered:
    version: RegisteredVersion
    created: bool


class Registry:
    """The control API's way to change the fleet's catalog of models and versions."""

    def __init__(self, ctx: Context, fleet: StoreReadiness) -> None:
        self.ctx = ctx
        self.fleet = fleet
        self.policy = RegistrationPolicy.from_section(ctx.config.registration, ctx.config.base_dir)

    async def _prepared(self, model: str, name: str, body: Mapping[str, Any]) -> RegisteredVersion:
        """A checked, pinned version ready to store; refused before anything is written."""
        try:
            check_name("version", name, f"model {model!r}")
        except ConfigError as error:
            raise ValidationError(str(error)) from None
        backend = body.get("backend")
        if not isinstance(backend, str) or not backend:
            raise ValidationError(
                f"version {name!r} of model {model!r}: 'backend' must name a backend "
                "(sklearn, onnx, http, rest, mlflow, python, fake)"
            )
        requested = {k: v for k, v in body.items() if k != "backend"}
        spec = VersionSpec(name, backend, requested, VersionSource.API)
        from rollwise.backends.registry import validate_backend_options

        try:
            validate_backend_options(spec, model=model)
        except ConfigError as error:
            raise ValidationError(str(error)) from None
        check_registration(model, spec, self.policy)
        from rollwise.artifacts import pin

        # Pinning may ask a model registry or hash a file: off the event loop.
        pinned = await asyncio.get_running_loop().run_in_executor(
            None, partial(pin, spec, base_dir=self.ctx.config.base_dir, model=model)
        )
        return RegisteredVersion(
            model=model,
            spec=VersionSpec(name, backend, dict(pinned.options), VersionSource.API),
            requested=requested,
            spec_sha256=fingerprint({"backend": backend, "options": requested}),
            artifact_sha256=pinned.artifact_sha256,
            resolved=dict(pinned.resolved),
            registered_at_s=self.ctx.clock(),
        )

    async def register_version(
        self, model: str, name: str, body: Mapping[str, Any], actor: str
    ) -> Registered:
        ctx = self.ctx
        known = ctx.model(model)
        backend = body.get("backend")
        if isinstance(backend, str):
            kinds = {v.name: v.backend for v in known.versions.values()}
            _check_kinds({**kinds, name: backend}, f"model {model!r}")
        existing = await ctx.db(ctx.store.get_version, model, name)
        if existing is not None and existing.source is VersionSource.CONFIG:
            raise Conflict(
                f"version {name!r} of model {model!r} is managed by the config; "
                "register the new spec under a new name"
            )
        version = await self._prepared(model, name, body)
        resolved = f" ({_resolution(version)})" if version.resolved else ""
        event = Event(
            model=model,
            kind="version.registered",
            message=f"version {name} registered: {version.spec.backend}{resolved}",
            data={
                "version": name,
                "backend": version.spec.backend,
                # Viewers read events: an upstream's API key in headers must not show.
                "options": mask_option_headers(version.spec.options),
                "spec_sha256": version.spec_sha256,
                "artifact_sha256": version.artifact_sha256,
                "resolved": dict(version.resolved),
            },
            at_s=ctx.clock(),
            actor=actor,
        )
        stored, created = await ctx.db(ctx.store.register_version, version, event)
        return Registered(stored, created)

    async def retire_version(self, model: str, name: str, actor: str) -> RegisteredVersion:
        ctx = self.ctx
        ctx.model(model)
        now = ctx.clock()

        def refusal(routing: Any, latest: RolloutRow | None) -> str | None:
            status = RolloutStatus.from_dict(latest.status) if latest is not None else None
            return retire_refusal(model, name, routing, status, now)

        event = Event(
            model=model,
            kind="version.retired",
            message=f"version {name} retired",
            data={"version": name},
            at_s=now,
            actor=actor,
        )
        return await ctx.db(ctx.store.retire_version, model, name, event, refusal)

    async def create_model(self, name: str, body: Mapping[str, Any], actor: str) -> bool:
        ctx = self.ctx
        try:
            check_name("model", name, "the request")
        except ConfigError as error:
            raise ValidationError(str(error)) from None
        if name in ctx.config.models:
            raise Conflict(f"model {name!r} is managed by the config; change it there")
        stable = body.get("stable")
        versions = body.get("versions") or {}
        if not isinstance(stable, str) or not isinstance(versions, Mapping):
            raise ValidationError(
                f"model {name!r}: give 'stable' (a version name) and 'versions' "
                "(a mapping of version names to specs)"
            )
        if stable not in versions:
            raise ValidationError(
                f"model {name!r}: stable version {stable!r} must be among 'versions' "
                f"({', '.join(versions) or 'none'})"
            )
        unknown = sorted(
            set(body) - {"stable", "versions", "sticky_key", "salt", "task", "agreement_tolerance"}
        )
        if unknown:
            raise ValidationError(f"model {name!r}: unknown keys {', '.join(unknown)}")
        sticky = body.get("sticky_key")
        try:
            sticky_key = parse_sticky_key(sticky) if sticky else None
        except ValueError as error:
            raise ValidationError(f"model {name!r}: sticky_key: {error}") from None
        task = body.get("task", "classification")
        if task not in TASKS:
            raise ValidationError(f"model {name!r}: task {task!r} must be one of {TASKS}")
        tolerance = body.get("agreement_tolerance", 1e-6)
        if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or tolerance < 0:
            raise ValidationError(
                f"model {name!r}: agreement_tolerance must be a number >= 0, got {tolerance!r}"
            )
        salt = body.get("salt", "")
        if not isinstance(salt, str):
            raise ValidationError(f"model {name!r}: salt must be text")
        prepared = []
        for version_name, spec in versions.items():
            if not isinstance(spec, Mapping):
                raise ValidationError(
                    f"model {name!r}: version {version_name!r} must be a mapping with a backend"
                )
            prepared.append(await self._prepared(name, str(version_name), spec))
        _check_kinds({v.name: v.spec.backend for v in prepared}, f"model {name!r}")
        model = ModelSpec(
            name=name,
            stable=stable,
            versions={v.name: v.spec for v in prepared},
            sticky_key=sticky_key,
            salt=salt,
            task=str(task),
            agreement_tolerance=float(tolerance),
            source=VersionSource.API,
        )
        event = Event(
            model=name,
            kind="model.created",
            message=f"model {name} created with stable version {stable}",
            data={"stable": stable, "versions": sorted(versions)},
            at_s=ctx.clock(),
            actor=actor,
        )
        return bool(await ctx.db(ctx.store.create_model, model, prepared, event, ctx.clock()))

    async def bring_back(self, model: str, version: str, actor: str, timeout_s: float) -> None:
        """Reload a parked version on every replica and wait until the fleet has it
        ready (a rollback to a previous stable that was unloaded)."""
        ctx = self.ctx
        stored = await ctx.db(ctx.store.get_version, model, version)
        if stored is None:
            raise NotFound(f"model {model!r} has no version {version!r} to roll back to")
        if not stored.keep_loaded:
            event = Event(
                model=model,
                kind="version.reloading",
                message=f"version {version} is loaded again on every replica for a rollback",
                data={"version": version},
                at_s=ctx.clock(),
                actor=actor,
            )
            await ctx.db(ctx.store.set_keep_loaded, model, version, True, event)
        deadline = ctx.clock() + timeout_s
        while True:
            found = await ctx.db(self.fleet.of, model, version)
            if found.everywhere:
                return
            if found.failed:
                raise Conflict(
                    f"model {model!r}: cannot roll back to {version!r}: {found.why_not()}"
                )
            if ctx.clock() > deadline:
                raise Conflict(
                    f"model {model!r}: {version!r} is not ready on every replica after "
                    f"{timeout_s:g} s ({found.why_not()}); the rollback was not made"
                )
            await asyncio.sleep(0.2)


def _check_kinds(kinds: Mapping[str, str], where: str) -> None:
    """A model's versions are all ``rest`` or none (``check_model_backends``)."""
    from rollwise.backends.options import check_model_backends

    try:
        check_model_backends(kinds, where)
    except ConfigError as error:
        raise ValidationError(str(error)) from None


def _resolution(version: RegisteredVersion) -> str:
    resolved = version.resolved
    parts = [f"{k}={v}" for k, v in resolved.items() if isinstance(v, str | int)]
    return ", ".join(parts)
