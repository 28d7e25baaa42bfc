"""The catalog: models and their versions, as every replica of the fleet loads them.

A version is managed either by the config (written by ``sync_models``, see
``config_sync``) or by the control API (``register_version``, ``create_model``), and is
immutable once registered through the API: the same spec again changes nothing, another
spec under the same name is refused. Every change queues on the state lock, bumps the
state counter (replicas poll it to notice a new or retired version) and writes its
event in the same transaction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from rollwise.domain import (
    Event,
    ModelSpec,
    RegisteredVersion,
    Routing,
    VersionSource,
    VersionSpec,
)
from rollwise.errors import Conflict, NotFound, ValidationError
from rollwise.store import schema as t
from rollwise.store.jsontext import spec_fingerprint
from rollwise.store.records import RetireRefusal
from rollwise.store.rows import (
    latest_rollout,
    parse_sticky_key,
    read_routing,
    sticky_text,
    version_of,
    version_values,
)
from rollwise.store.sql_base import SqlBase


class Catalog(SqlBase):
    """The API side of ``CatalogStore`` on SQL, and the reads of the catalog."""

    # reads --------------------------------------------------------------------------
    def list_models(self) -> list[ModelSpec]:
        """Every stored model, by name, with all its versions (config and API)."""
        with self._tx("listing models", write=False) as conn:
            models = conn.execute(sa.select(t.models).order_by(t.models.c.name)).all()
            versions = conn.execute(
                sa.select(t.versions).order_by(t.versions.c.model, t.versions.c.name)
            ).all()
        specs: dict[str, dict[str, VersionSpec]] = {}
        for row in versions:
            specs.setdefault(row.model, {})[row.name] = version_of(row).spec
        return [
            ModelSpec(
                name=row.name,
                stable=row.stable,
                versions=specs.get(row.name, {}),
                sticky_key=parse_sticky_key(row.sticky_key) if row.sticky_key else None,
                salt=row.salt,
                task=row.task,
                agreement_tolerance=row.agreement_tolerance,
                source=VersionSource(row.source),
            )
            for row in models
        ]

    def list_versions(self, model: str | None = None) -> list[RegisteredVersion]:
        """Versions by model, then name."""
        query = sa.select(t.versions).order_by(t.versions.c.model, t.versions.c.name)
        if model is not None:
            query = query.where(t.versions.c.model == model)
        with self._tx("listing versions", write=False) as conn:
            rows = conn.execute(query).all()
        return [version_of(row) for row in rows]

    def get_version(self, model: str, name: str) -> RegisteredVersion | None:
        with self._tx(f"reading version {name} of {model}", write=False) as conn:
            return self._read_version(conn, model, name)

    # API writes ---------------------------------------------------------------------
    def register_version(
        self, version: RegisteredVersion, event: Event
    ) -> tuple[RegisteredVersion, bool]:
        """Record a new version of a stored model; ``(stored, True)`` when written.

        The same spec again (equal ``spec_sha256``) returns ``(stored, False)`` and
        writes nothing, so a client may retry. ``Conflict`` for another spec under a
        registered name, ``NotFound`` for an unknown model. An empty ``spec_sha256`` is
        filled in from the backend and ``requested`` (or the options, when nothing was
        requested), and an unset ``registered_at_s`` with the event's time.
        """
        version = completed(version, at_s=event.at_s)
        _check_event(event, version.model)
        action = f"registering version {version.name} of {version.model}"
        with self._tx(action, write=True) as conn:
            # Replicas that register the same version at once queue here; the later
            # ones find it registered.
            self._lock_state(conn)
            self._require_model(conn, version.model)
            stored = self._read_version(conn, version.model, version.name)
            if stored is not None:
                if stored.spec_sha256 == version.spec_sha256:
                    return stored, False
                raise Conflict(_immutable(stored))
            self._insert_version(conn, version, event.at_s)
            self._bump_state(conn)
            self._insert_event(conn, event)
            return self._read_version(conn, version.model, version.name) or version, True

    def retire_version(
        self, model: str, name: str, event: Event, refusal: RetireRefusal
    ) -> RegisteredVersion:
        """Delete an API-managed version and every replica's load state of it, in one
        transaction with its event; returns the version as it was.

        ``NotFound`` when absent; ``Conflict`` when the config manages it, or with the
        reason ``refusal`` gives when asked with the model's routing and latest rollout,
        read under the state lock so that neither can change before the delete.
        """
        _check_event(event, model)
        with self._tx(f"retiring version {name} of {model}", write=True) as conn:
            self._lock_state(conn)
            stored = self._require_version(conn, model, name)
            if stored.source is VersionSource.CONFIG:
                raise Conflict(
                    f"version {name!r} of model {model!r} is managed by the config: "
                    "remove it from the config"
                )
            reason = refusal(read_routing(conn, model), latest_rollout(conn, model))
            if reason is not None:
                raise Conflict(reason)
            self._delete_versions(conn, model, [name])
            self._bump_state(conn)
            self._insert_event(conn, event)
        return stored

    def set_keep_loaded(self, model: str, name: str, keep: bool, event: Event) -> bool:
        """Set whether replicas keep the version in memory; True when that changed it,
        False (nothing written) when it already was so."""
        _check_event(event, model)
        with self._tx(f"setting keep_loaded of version {name} of {model}", write=True) as conn:
            self._lock_state(conn)
            stored = self._require_version(conn, model, name)
            if stored.keep_loaded == keep:
                return False
            c = t.versions.c
            conn.execute(
                sa.update(t.versions)
                .where(c.model == model, c.name == name)
                .values(keep_loaded=keep, updated_at_s=event.at_s)
            )
            self._bump_state(conn)
            self._insert_event(conn, event)
        return True

    def create_model(
        self,
        model: ModelSpec,
        versions: Sequence[RegisteredVersion],
        event: Event,
        now_s: float,
    ) -> bool:
        """Create a model at runtime with ``versions``, and routing 100 % on its stable
        version; True when written.

        The model and its versions are stored as API-managed, whatever their specs say;
        ``model.versions`` is not read. When the model exists already with the same
        stable version, sticky key, salt, task and tolerance, and with each of
        ``versions`` registered under the same spec, nothing is written and the answer
        is False; when it exists otherwise, ``Conflict`` saying what differs.
        """
        names = [version.name for version in versions]
        if model.stable not in names:
            raise ValidationError(
                f"model {model.name!r}: stable version {model.stable!r} is not among the "
                f"versions given ({', '.join(names) or 'none'})"
            )
        if len(set(names)) != len(names):
            raise ValidationError(f"model {model.name!r}: a version is given twice ({names})")
        for version in versions:
            if version.model != model.name:
                raise ValidationError(
                    f"version {version.name!r} is of model {version.model!r}, not {model.name!r}"
                )
        _check_event(event, model.name)
        wanted = [completed(v, at_s=now_s, source=VersionSource.API) for v in versions]
        with self._tx(f"creating model {model.name}", write=True) as conn:
            self._lock_state(conn)
            row = conn.execute(sa.select(t.models).where(t.models.c.name == model.name)).first()
            if row is not None:
                stored = self._stored_versions(conn, model.name)
                differences = _model_differences(row, model) + _version_differences(stored, wanted)
                if differences:
                    raise Conflict(
                        f"model {model.name!r} exists already and differs: {'; '.join(differences)}"
                    )
                return False
            conn.execute(
                sa.insert(t.models).values(**model_values(model, VersionSource.API, now_s))
            )
            for version in wanted:
                self._insert_version(conn, version, now_s)
            routing = Routing(
                model=model.name,
                stable=model.stable,
                weights={model.stable: 100},
                mirrors={},
                salt=model.effective_salt,
            )
            self._write_routing(conn, routing, now_s)
            self._insert_event(conn, event)
        return True

    # helpers shared with the config sync ---------------------------------------------
    def _read_version(self, conn: Connection, model: str, name: str) -> RegisteredVersion | None:
        c = t.versions.c
        row = conn.execute(sa.select(t.versions).where(c.model == model, c.name == name)).first()
        return None if row is None else version_of(row)

    def _stored_versions(self, conn: Connection, model: str) -> dict[str, RegisteredVersion]:
        c = t.versions.c
        rows = conn.execute(sa.select(t.versions).where(c.model == model)).all()
        return {row.name: version_of(row) for row in rows}

    def _insert_version(self, conn: Connection, version: RegisteredVersion, at_s: float) -> None:
        conn.execute(sa.insert(t.versions).values(**version_values(version, at_s)))

    def _delete_versions(self, conn: Connection, model: str, names: Sequence[str]) -> None:
        """Delete versions with every replica's load state of them."""
        c = t.versions.c
        conn.execute(sa.delete(t.versions).where(c.model == model, c.name.in_(names)))
        r = t.replica_versions.c
        conn.execute(sa.delete(t.replica_versions).where(r.model == model, r.version.in_(names)))

    def _require_model(self, conn: Connection, model: str) -> None:
        names = list(conn.execute(sa.select(t.models.c.name).order_by(t.models.c.name)).scalars())
        if model not in names:
            raise NotFound(f"unknown model {model!r} (models: {', '.join(names) or 'none'})")

    def _require_version(self, conn: Connection, model: str, name: str) -> RegisteredVersion:
        stored = self._read_version(conn, model, name)
        if stored is None:
            self._require_model(conn, model)
            known = sorted(self._stored_versions(conn, model))
            raise NotFound(
                f"model {model!r} has no version {name!r} (versions: {', '.join(known) or 'none'})"
            )
        return stored


def completed(
    version: RegisteredVersion, *, at_s: float, source: VersionSource | None = None
) -> RegisteredVersion:
    """``version`` with what a caller may leave out filled in: ``requested`` (the
    options), ``spec_sha256`` (their fingerprint) and ``registered_at_s`` (``at_s``)."""
    requested = version.requested or version.spec.options
    spec = version.spec if source is None else dataclasses.replace(version.spec, source=source)
    return dataclasses.replace(
        version,
        spec=spec,
        requested=requested,
        spec_sha256=version.spec_sha256 or spec_fingerprint(spec.backend, requested),
        registered_at_s=version.registered_at_s or at_s,
    )


def model_values(model: ModelSpec, source: VersionSource, now_s: float) -> dict[str, Any]:
    return {
        "name": model.name,
        "stable": model.stable,
        "sticky_key": sticky_text(model.sticky_key),
        "task": model.task,
        "salt": model.salt,
        "agreement_tolerance": model.agreement_tolerance,
        "source": source.value,
        "created_at_s": now_s,
        "updated_at_s": now_s,
    }


def _model_differences(row: Row[Any], model: ModelSpec) -> list[str]:
    stored_salt = row.salt or row.name
    pairs = (
        ("stable version", row.stable, model.stable),
        ("sticky key", row.sticky_key, sticky_text(model.sticky_key)),
        ("salt", stored_salt, model.effective_salt),
        ("task", row.task, model.task),
        ("agreement tolerance", row.agreement_tolerance, model.agreement_tolerance),
    )
    return [
        f"its {what} is {_shown(stored)}, not {_shown(given)}"
        for what, stored, given in pairs
        if stored != given
    ]


def _version_differences(
    stored: dict[str, RegisteredVersion], wanted: Sequence[RegisteredVersion]
) -> list[str]:
    differences = []
    for version in wanted:
        found = stored.get(version.name)
        if found is None:
            differences.append(f"it has no version {version.name!r}")
        elif found.spec_sha256 != version.spec_sha256:
            differences.append(f"its version {version.name!r} has another spec")
    return differences


def _shown(value: object) -> str:
    return "none" if value is None else repr(value)


def _immutable(stored: RegisteredVersion) -> str:
    where = f"version {stored.name!r} of model {stored.model!r}"
    if stored.source is VersionSource.CONFIG:
        return (
            f"{where} is managed by the config, with another spec; a version is immutable "
            "once registered: register this spec under a new name"
        )
    return (
        f"{where} is registered already, with another spec; a version is immutable once "
        "registered: register this spec under a new name"
    )


def _check_event(event: Event, model: str) -> None:
    if event.model != model:
        raise ValidationError(f"the event is about model {event.model!r}, not {model!r}")
