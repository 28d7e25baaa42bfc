"""Rows to values and back, and the reads that several aggregates make alike.

Each aggregate's module writes its own tables, but some reads cross them: retiring a
version or syncing the config asks whether it still serves, which means reading the
model's routing and rollouts. Those reads, and the conversions between rows and
domain values, live here so that no aggregate reaches into another's module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from rollwise.domain import (
    RegisteredVersion,
    Replica,
    ReplicaVersion,
    Routing,
    StickyKey,
    StickyKind,
    VersionHealth,
    VersionSource,
    VersionSpec,
)
from rollwise.errors import StoreError
from rollwise.store import schema as t
from rollwise.store.records import ACTIVE_PHASES, Lease, RolloutRow

# routing and rollouts -----------------------------------------------------------------


def routing_of(row: Row[Any]) -> Routing:
    return Routing(
        model=row.model,
        stable=row.stable,
        weights=_percent_map(row.weights),
        mirrors=_percent_map(row.mirrors),
        salt=row.salt,
    )


def routing_values(routing: Routing, at_s: float) -> dict[str, Any]:
    return {
        "model": routing.model,
        "stable": routing.stable,
        "weights": dict(routing.weights),
        "mirrors": dict(routing.mirrors),
        "salt": routing.salt,
        "updated_at_s": at_s,
    }


def read_routing(conn: Connection, model: str) -> Routing | None:
    row = conn.execute(sa.select(t.routing).where(t.routing.c.model == model)).first()
    return None if row is None else routing_of(row)


def rollout_of(row: Row[Any]) -> RolloutRow:
    return RolloutRow(
        model=row.model,
        phase=row.phase,
        spec=row.spec,
        status=row.status,
        created_at_s=row.created_at_s,
        updated_at_s=row.updated_at_s,
        revision=int(row.revision),
        id=int(row.id),
    )


def active_rollout(conn: Connection, model: str) -> RolloutRow | None:
    """The model's rollout in progress, if any."""
    c = t.rollouts.c
    found = conn.execute(
        sa.select(t.rollouts)
        .where(c.model == model, c.phase.in_(ACTIVE_PHASES))
        .order_by(c.id.desc())
        .limit(1)
    ).first()
    return None if found is None else rollout_of(found)


def latest_rollout(conn: Connection, model: str) -> RolloutRow | None:
    """The model's newest rollout, whatever its phase."""
    c = t.rollouts.c
    found = conn.execute(
        sa.select(t.rollouts).where(c.model == model).order_by(c.id.desc()).limit(1)
    ).first()
    return None if found is None else rollout_of(found)


def describe(rollout: RolloutRow) -> str:
    """``#3, canary to v2``: the id, then what the spec says it does, where it says."""
    strategy = rollout.spec.get("strategy")
    candidate = rollout.spec.get("candidate")
    plan = " ".join(
        part
        for part in (
            str(strategy) if strategy else "",
            f"to {candidate}" if candidate else "",
        )
        if part
    )
    return f"#{rollout.id}, {plan}" if plan else f"#{rollout.id}"


def rollout_versions(rollout: RolloutRow) -> set[str]:
    """The versions a rollout moves traffic between: its candidate and its stable.

    The spec names the candidate; the status (``rollwise.rollout``'s) names both once
    the controller has written it.
    """
    names = {rollout.spec.get("candidate"), rollout.status.get("stable")}
    names.add(rollout.status.get("candidate"))
    return {str(name) for name in names if name}


def lease_of(row: Row[Any]) -> Lease:
    return Lease(
        name=row.name,
        holder=row.holder,
        expires_at_s=row.expires_at_s,
        epoch=int(row.epoch),
    )


# catalog ------------------------------------------------------------------------------


def version_of(row: Row[Any]) -> RegisteredVersion:
    return RegisteredVersion(
        model=row.model,
        spec=VersionSpec(
            name=row.name,
            backend=row.backend,
            options=row.options,
            source=VersionSource(row.source),
        ),
        requested=row.requested,
        spec_sha256=row.spec_sha256,
        artifact_sha256=row.artifact_sha256,
        resolved=row.resolved,
        registered_at_s=row.registered_at_s,
        keep_loaded=bool(row.keep_loaded),
    )


def version_values(version: RegisteredVersion, at_s: float) -> dict[str, Any]:
    return {
        "model": version.model,
        "name": version.name,
        "backend": version.spec.backend,
        "options": dict(version.spec.options),
        "source": version.source.value,
        "requested": dict(version.requested),
        "spec_sha256": version.spec_sha256,
        "artifact_sha256": version.artifact_sha256,
        "resolved": dict(version.resolved),
        "registered_at_s": version.registered_at_s,
        "keep_loaded": version.keep_loaded,
        "updated_at_s": at_s,
    }


def sticky_text(key: StickyKey | None) -> str | None:
    """A sticky key as stored: ``header:x-user-id``, with a header's name lower-cased
    as the config parser does, so that equal keys are equal text."""
    return None if key is None else str(parse_sticky_key(str(key)))


def parse_sticky_key(text: str) -> StickyKey:
    """``kind:NAME`` back into a key; the store's copy of the config's rule (the store
    may not import the config), with a header's name lower-cased."""
    kind, sep, name = text.partition(":")
    try:
        sticky_kind = StickyKind(kind)
    except ValueError:
        sticky_kind = None
    if not sep or not name or sticky_kind is None:
        raise StoreError(
            f"stored sticky key {text!r} is not header:NAME, cookie:NAME or field:NAME"
        )
    return StickyKey(sticky_kind, name.lower() if sticky_kind is StickyKind.HEADER else name)


# fleet --------------------------------------------------------------------------------


def replica_of(row: Row[Any]) -> Replica:
    return Replica(
        id=row.id,
        host=row.host,
        pid=int(row.pid),
        started_at_s=row.started_at_s,
        last_seen_s=row.last_seen_s,
        rollwise_version=row.rollwise_version,
        stopped=bool(row.stopped),
    )


def replica_version_of(row: Row[Any]) -> ReplicaVersion:
    return ReplicaVersion(
        replica=row.replica,
        model=row.model,
        version=row.version,
        health=VersionHealth(row.health),
        error=row.error,
        artifact_sha256=row.artifact_sha256,
        updated_at_s=row.updated_at_s,
    )


def _percent_map(value: Mapping[str, Any] | None) -> dict[str, int]:
    return {str(k): int(v) for k, v in (value or {}).items()}
