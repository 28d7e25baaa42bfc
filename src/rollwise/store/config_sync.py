"""The config's side of the catalog: recording the configured models and versions.

Every replica syncs its config at start and on reload, all under the state lock, so
replicas starting together take turns and only the first one writes. The config owns
the versions it manages: it adds, changes and removes them, but never one that still
serves traffic (the sync is refused whole, so a half-applied config never exists), and
never one registered through the control API. A sync that changes nothing writes
nothing; one that changes a model's catalog bumps the state counter once for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rollwise.domain import Event, ModelSpec, RegisteredVersion, Routing, VersionSource, VersionSpec
from rollwise.errors import ConfigError
from rollwise.store import schema as t
from rollwise.store.catalog import Catalog, model_values
from rollwise.store.jsontext import spec_fingerprint
from rollwise.store.records import RolloutRow
from rollwise.store.rows import active_rollout, read_routing, rollout_versions

EVENT_ROUTING_INITIALIZED = "routing.initialized"
EVENT_ROUTING_RESET = "routing.reset"

# Columns of a model that the config decides; the others are bookkeeping.
_MODEL_FIELDS = ("stable", "sticky_key", "task", "salt", "agreement_tolerance", "source")


class ConfigSync(Catalog):
    """``CatalogStore`` on SQL: the API side (``Catalog``) with the config sync."""

    def sync_models(self, models: Sequence[ModelSpec], now_s: float) -> list[Event]:
        """Record the configured models and their versions as config-managed, and
        (re)initialise routing that is missing or names a version that no longer
        exists. Returns the events written.

        ``ConfigError``, with nothing written, when a model's stable version is not
        among its versions, when a config version is named like an API-managed one,
        or when a config version removed from the config still serves. Models absent
        from ``models`` are left as they are: during a rolling config change, other
        replicas may still serve them.
        """
        for model in models:
            if model.stable not in model.versions:
                raise ConfigError(
                    f"model {model.name!r}: stable version {model.stable!r} is not among "
                    f"its versions ({', '.join(sorted(model.versions)) or 'none'})"
                )
        written: list[Event] = []
        with self._tx("syncing models", write=True) as conn:
            # Replicas that start together sync one after the other, so only the first
            # initialises a model's routing.
            self._lock_state(conn)
            for model in models:
                written.extend(self._sync_model(conn, model, now_s))
        return written

    def _sync_model(self, conn: Connection, model: ModelSpec, now_s: float) -> list[Event]:
        stored = self._stored_versions(conn, model.name)
        routing = read_routing(conn, model.name)
        wanted = {
            name: config_version(model.name, name, spec, now_s)
            for name, spec in model.versions.items()
        }
        for name in wanted:
            clash = stored.get(name)
            if clash is not None and clash.source is VersionSource.API:
                raise ConfigError(
                    f"model {model.name!r}: version {name!r} in the config is already "
                    "registered through the control API; choose a new name for it in the "
                    "config, or retire the registered one first"
                )
        removed = sorted(
            name
            for name, version in stored.items()
            if version.source is VersionSource.CONFIG and name not in wanted
        )
        if removed:
            active = active_rollout(conn, model.name)
            for name in removed:
                roles = serving_roles(name, routing, active)
                if roles:
                    raise ConfigError(
                        f"version {name!r} of model {model.name!r} was removed from the "
                        f"config but still serves ({' / '.join(roles)}): route it away first"
                    )

        changed = self._write_model(conn, model, now_s)
        for name, version in wanted.items():
            changed |= self._write_config_version(conn, version, stored.get(name), now_s)
        if removed:
            self._delete_versions(conn, model.name, removed)
            changed = True

        known = set(wanted) | {n for n, v in stored.items() if v.source is VersionSource.API}
        change = routing_to_initialise(model, routing, known, now_s)
        if change is None:
            if changed:
                self._bump_state(conn)
            return []
        fresh, event = change
        self._write_routing(conn, fresh, now_s)
        return [self._insert_event(conn, event)]

    def _write_model(self, conn: Connection, model: ModelSpec, now_s: float) -> bool:
        """Insert or update the model's row; False when it was as configured already."""
        values = model_values(model, VersionSource.CONFIG, now_s)
        row = conn.execute(sa.select(t.models).where(t.models.c.name == model.name)).first()
        if row is None:
            conn.execute(sa.insert(t.models).values(**values))
            return True
        if all(getattr(row, field) == values[field] for field in _MODEL_FIELDS):
            return False
        conn.execute(
            sa.update(t.models)
            .where(t.models.c.name == model.name)
            .values({field: values[field] for field in (*_MODEL_FIELDS, "updated_at_s")})
        )
        return True

    def _write_config_version(
        self,
        conn: Connection,
        version: RegisteredVersion,
        stored: RegisteredVersion | None,
        now_s: float,
    ) -> bool:
        """Insert or update one config version; False when it was as configured."""
        if stored is None:
            self._insert_version(conn, version, now_s)
            return True
        if stored.spec_sha256 == version.spec_sha256:
            return False
        # A changed spec is a new artifact to load: what was pinned or declared for the
        # old one no longer holds. Whether it is parked (keep_loaded) stays as it was.
        c = t.versions.c
        conn.execute(
            sa.update(t.versions)
            .where(c.model == version.model, c.name == version.name)
            .values(
                backend=version.spec.backend,
                options=dict(version.spec.options),
                requested=dict(version.requested),
                spec_sha256=version.spec_sha256,
                artifact_sha256="",
                resolved={},
                registered_at_s=now_s,
                updated_at_s=now_s,
            )
        )
        return True


def config_version(model: str, name: str, spec: VersionSpec, now_s: float) -> RegisteredVersion:
    """A configured version as the store keeps it: config-managed, requested exactly
    as loaded, fingerprinted as the control API fingerprints a registration."""
    options = dict(spec.options)
    return RegisteredVersion(
        model=model,
        spec=VersionSpec(
            name=name, backend=spec.backend, options=options, source=VersionSource.CONFIG
        ),
        requested=options,
        spec_sha256=spec_fingerprint(spec.backend, options),
        registered_at_s=now_s,
    )


def serving_roles(version: str, routing: Routing | None, active: RolloutRow | None) -> list[str]:
    """How ``version`` still serves: ``stable``, ``10 %``, ``mirrored``, ``in rollout
    #3``; empty when it serves nobody and may go."""
    roles: list[str] = []
    if routing is not None:
        if routing.stable == version:
            roles.append("stable")
        if routing.weight_of(version) > 0:
            roles.append(f"{routing.weight_of(version)} %")
        if routing.mirrors.get(version, 0) > 0:
            roles.append("mirrored")
    if active is not None and version in rollout_versions(active):
        roles.append(f"in rollout #{active.id}")
    return roles


def routing_to_initialise(
    model: ModelSpec, stored: Routing | None, known: set[str], now_s: float
) -> tuple[Routing, Event] | None:
    """The routing ``sync_models`` writes for a model, with its event; None to keep it.

    A model without routing gets 100 % on its stable version. A routing that names a
    version no longer in the store loses it: when the version had no share (the sync
    refuses to remove a serving one), only that name goes and every user stays where
    they are; when it had one (routing written naming a version never stored), the
    routing is reset to 100 % on the stable version.
    """
    fresh = Routing(
        model=model.name,
        stable=model.stable,
        weights={model.stable: 100},
        mirrors={},
        salt=model.effective_salt,
    )
    if stored is None:
        return fresh, Event(
            model=model.name,
            kind=EVENT_ROUTING_INITIALIZED,
            message=(
                f"model {model.name} has no stored routing: "
                f"100 % on its stable version {model.stable}"
            ),
            data={"routing": fresh.to_dict()},
            at_s=now_s,
        )
    missing = sorted({stored.stable, *stored.weights, *stored.mirrors} - known)
    if not missing:
        return None
    named = f"{'version' if len(missing) == 1 else 'versions'} {', '.join(missing)}"
    if any(serving_roles(name, stored, None) for name in missing):
        routing = fresh
        message = (
            f"stored routing of model {model.name} names {named}, which no longer "
            f"exist{'s' if len(missing) == 1 else ''}: 100 % back on its stable version "
            f"{model.stable}"
        )
    else:
        routing = Routing(
            model=stored.model,
            stable=stored.stable,
            weights=_without(stored.weights, missing),
            mirrors=_without(stored.mirrors, missing),
            salt=stored.salt,
        )
        message = (
            f"stored routing of model {model.name} names {named} with no traffic, which "
            f"no longer exist{'s' if len(missing) == 1 else ''}: dropped from the routing"
        )
    return routing, Event(
        model=model.name,
        kind=EVENT_ROUTING_RESET,
        message=message,
        data={
            "routing": routing.to_dict(),
            "previous": stored.to_dict(),
            "missing_versions": missing,
        },
        at_s=now_s,
    )


def _without(shares: Mapping[str, int], names: Sequence[str]) -> dict[str, int]:
    return {version: share for version, share in shares.items() if version not in names}
