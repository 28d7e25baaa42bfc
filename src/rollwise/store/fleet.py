"""The fleet: gateway replicas, their heartbeats, and each version's load state in each.

Every replica writes its own rows only: one heartbeat a second (an upsert of its
``replicas`` row) and, when its versions change, the whole set of its
``replica_versions`` rows. None of it takes the state lock or bumps the state counter:
a heartbeat must stay one cheap statement, and the readers of the fleet (the controller,
status views) poll it on their own schedule. Deleting a replica deletes its load
states through the foreign key's cascade.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from rollwise.domain import Replica, ReplicaVersion, VersionHealth
from rollwise.errors import NotFound, ValidationError
from rollwise.store import schema as t
from rollwise.store.rows import replica_of, replica_version_of
from rollwise.store.sql_base import SqlBase


class Fleet(SqlBase):
    """``FleetStore`` on SQL."""

    def heartbeat(self, replica: Replica) -> None:
        """Record that ``replica`` is alive, as one upsert; a replica that stopped and
        came back under the same id is no longer stopped."""
        values = {
            "id": replica.id,
            "host": replica.host,
            "pid": replica.pid,
            "started_at_s": replica.started_at_s,
            "last_seen_s": replica.last_seen_s,
            "rollwise_version": replica.rollwise_version,
            "stopped": False,
        }
        with self._tx(f"recording a heartbeat of replica {replica.id}", write=True) as conn:
            self._upsert(conn, t.replicas, values, keys=("id",))

    def replica_stopped(self, replica_id: str, now_s: float) -> None:
        """Mark the replica stopped at ``now_s`` and delete its load states.

        It stays listed, stopped, until ``prune_replicas`` ages it out, so that status
        views can say it left rather than that it vanished. An unknown id is ignored:
        saying goodbye twice, or after being pruned, is harmless.
        """
        with self._tx(f"recording that replica {replica_id} stopped", write=True) as conn:
            conn.execute(
                sa.update(t.replicas)
                .where(t.replicas.c.id == replica_id)
                .values(stopped=True, last_seen_s=now_s)
            )
            conn.execute(
                sa.delete(t.replica_versions).where(t.replica_versions.c.replica == replica_id)
            )

    def report_versions(self, replica_id: str, states: Sequence[ReplicaVersion]) -> None:
        """Replace the replica's load states with ``states``, in one transaction:
        a version the replica no longer reports is no longer listed for it.

        ``ValidationError`` for a state of another replica or a version reported twice;
        ``NotFound`` when the replica has no heartbeat on record (it never sent one, or
        it was pruned): its next heartbeat records it again.
        """
        seen: set[tuple[str, str]] = set()
        for state in states:
            if state.replica != replica_id:
                raise ValidationError(
                    f"replica {replica_id!r} reported a state of replica {state.replica!r}"
                )
            key = (state.model, state.version)
            if key in seen:
                raise ValidationError(
                    f"replica {replica_id!r} reported version {state.version!r} of model "
                    f"{state.model!r} twice"
                )
            seen.add(key)
        rows = [
            {
                "replica": replica_id,
                "model": state.model,
                "version": state.version,
                "health": VersionHealth(state.health).value,
                "error": state.error,
                "artifact_sha256": state.artifact_sha256,
                "updated_at_s": state.updated_at_s,
            }
            for state in states
        ]
        c = t.replica_versions.c
        with self._tx(f"recording the versions of replica {replica_id}", write=True) as conn:
            known = conn.execute(
                sa.select(t.replicas.c.id).where(t.replicas.c.id == replica_id)
            ).first()
            if known is None:
                raise NotFound(f"replica {replica_id!r} has no heartbeat on record; send one first")
            conn.execute(sa.delete(t.replica_versions).where(c.replica == replica_id))
            if rows:
                conn.execute(sa.insert(t.replica_versions), rows)

    def list_replicas(self) -> list[Replica]:
        """Every recorded replica (stopped ones too), oldest start first."""
        c = t.replicas.c
        with self._tx("listing replicas", write=False) as conn:
            rows = conn.execute(sa.select(t.replicas).order_by(c.started_at_s, c.id)).all()
        return [replica_of(row) for row in rows]

    def list_replica_versions(self, model: str | None = None) -> list[ReplicaVersion]:
        """Load states by model, version, then replica."""
        c = t.replica_versions.c
        query = sa.select(t.replica_versions).order_by(c.model, c.version, c.replica)
        if model is not None:
            query = query.where(c.model == model)
        with self._tx("listing the versions of replicas", write=False) as conn:
            rows = conn.execute(query).all()
        return [replica_version_of(row) for row in rows]

    def prune_replicas(self, older_than_s: float) -> int:
        """Delete replicas last seen before ``older_than_s`` (stopped or silent) with
        their load states; returns how many replicas."""
        with self._tx("pruning replicas", write=True) as conn:
            return int(
                conn.execute(
                    sa.delete(t.replicas).where(t.replicas.c.last_seen_s < older_than_s)
                ).rowcount
            )
