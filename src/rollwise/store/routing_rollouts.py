"""Routing, rollouts and the controller's lease: the state that moves traffic.

The three share the state lock: a routing write checks that no rollout owns the model,
a rollout save checks the lease and its own revision, and each holds the lock from its
check to its commit. A routing write bumps the state counter that replicas poll.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from rollwise.domain import Event, Routing
from rollwise.errors import Conflict, NotFound, StoreError, ValidationError
from rollwise.routing.weights import check_shares
from rollwise.store import schema as t
from rollwise.store.records import ACTIVE_PHASES, Lease, RolloutRow
from rollwise.store.rows import (
    active_rollout,
    describe,
    lease_of,
    read_routing,
    rollout_of,
    routing_of,
)
from rollwise.store.sql_base import SqlBase


class RoutingRollouts(SqlBase):
    """``RoutingStore``, ``RolloutStore`` and ``LeaseStore`` on SQL."""

    # routing ------------------------------------------------------------------------
    def get_routing(self, model: str) -> Routing | None:
        with self._tx("reading routing", write=False) as conn:
            return read_routing(conn, model)

    def list_routings(self) -> list[Routing]:
        with self._tx("listing routing", write=False) as conn:
            rows = conn.execute(sa.select(t.routing).order_by(t.routing.c.model)).all()
        return [routing_of(row) for row in rows]

    def set_routing(self, routing: Routing, event: Event, *, force: bool = False) -> Event:
        """Replace a model's routing and append its event in one transaction.

        Raises ``NotFound`` for a model the store does not know, ``ValidationError``
        for weights that do not sum to 100 and ``Conflict`` while the model has a
        rollout in progress (its controller owns the routing and would undo the
        change), unless ``force``.
        """
        if event.model != routing.model:
            raise ValidationError(
                f"the event is about model {event.model!r} but the routing is for {routing.model!r}"
            )
        check_shares(routing)
        with self._tx(f"setting the routing of {routing.model}", write=True) as conn:
            # Locked before the check, so a rollout cannot start between the two.
            self._lock_state(conn)
            self._check_model(conn, routing.model)
            if not force:
                active = active_rollout(conn, routing.model)
                if active is not None:
                    raise Conflict(
                        f"model {routing.model!r} has a rollout in progress "
                        f"({describe(active)}); abort or promote it first, or force"
                    )
            self._write_routing(conn, routing, event.at_s)
            return self._insert_event(conn, event)

    # rollouts -----------------------------------------------------------------------
    def start_rollout(
        self,
        row: RolloutRow,
        events: Sequence[Event],
        routing: Routing | None = None,
        *,
        replacing: RolloutRow | None = None,
    ) -> RolloutRow:
        """Insert a new rollout (revision 1), its routing and its events in one
        transaction; returns the row with its id.

        ``Conflict`` when the model has a rollout in progress, unless ``replacing`` is
        that rollout at its stored revision: it is then saved first, with the phase
        (one that is not in progress) and status it carries. ``NotFound`` for a model
        the store does not know. Events whose data has ``rollout: None`` are about the
        new rollout and get its id, which is known only here.
        """
        if routing is not None:
            _check_routing_of(routing, row.model)
        if replacing is not None and replacing.phase in ACTIVE_PHASES:
            raise ValidationError(
                f"rollout #{replacing.id} must leave phase {replacing.phase!r} to be "
                "replaced: a model has one rollout in progress at a time"
            )
        with self._tx(f"starting a rollout of {row.model}", write=True) as conn:
            # Two starters for one model queue here; the second then sees the first's
            # rollout in progress.
            self._lock_state(conn)
            self._check_model(conn, row.model)
            active = active_rollout(conn, row.model)
            if active is not None and replacing is None:
                raise Conflict(
                    f"model {row.model!r} has a rollout in progress ({describe(active)}, "
                    f"{active.phase}); abort it or wait for it to end, or apply with replace"
                )
            if replacing is not None:
                if (
                    active is None
                    or active.id != replacing.id
                    or active.revision != replacing.revision
                ):
                    raise Conflict(f"rollout #{replacing.id} changed meanwhile; try again")
                self._update_rollout(conn, replacing, replacing.revision)
            result = conn.execute(
                sa.insert(t.rollouts).values(
                    model=row.model,
                    phase=row.phase,
                    revision=1,
                    spec=dict(row.spec),
                    status=dict(row.status),
                    created_at_s=row.created_at_s,
                    updated_at_s=row.updated_at_s,
                )
            )
            key = result.inserted_primary_key
            if key is None:
                raise StoreError(f"the store at {self.url} did not return the new rollout's id")
            new_id = int(key[0])
            if routing is not None:
                self._write_routing(conn, routing, row.updated_at_s)
            for event in events:
                if "rollout" in event.data and event.data["rollout"] is None:
                    event = dataclasses.replace(event, data={**event.data, "rollout": new_id})
                self._insert_event(conn, event)
        return dataclasses.replace(row, id=new_id, revision=1)

    def save_rollout(
        self,
        row: RolloutRow,
        *,
        expected_revision: int,
        routing: Routing | None = None,
        events: Sequence[Event] = (),
        lease: tuple[str, str, int] | None = None,
    ) -> RolloutRow:
        """Save the rollout's phase, status and updated_at_s, its routing and its events
        in one transaction; returns the row as stored, at ``expected_revision + 1``.

        Nothing is written when a check fails: ``Conflict`` when ``lease`` (name,
        holder, epoch) is no longer held at that epoch, when the stored revision is not
        ``expected_revision``, or when the row would enter a phase in progress while
        another rollout of its model is; ``NotFound`` for an unknown id. The spec and
        the model of a rollout never change.
        """
        if row.id is None:
            raise ValidationError("a rollout without an id cannot be saved; start it first")
        with self._tx(f"saving rollout #{row.id}", write=True) as conn:
            self._lock_state(conn)
            if lease is not None:
                self._check_fence(conn, *lease)
            stored = conn.execute(sa.select(t.rollouts).where(t.rollouts.c.id == row.id)).first()
            if stored is None:
                raise NotFound(f"rollout #{row.id} is not in the store")
            if stored.revision != expected_revision:
                raise Conflict(
                    f"rollout #{row.id} changed meanwhile (revision {stored.revision}, "
                    f"expected {expected_revision})"
                )
            if row.model != stored.model:
                raise ValidationError(
                    f"rollout #{row.id} is of model {stored.model!r}, not {row.model!r}"
                )
            if routing is not None:
                _check_routing_of(routing, stored.model)
            if row.phase in ACTIVE_PHASES:
                other = active_rollout(conn, stored.model)
                if other is not None and other.id != row.id:
                    raise Conflict(
                        f"rollout #{row.id} cannot go back to {row.phase!r}: model "
                        f"{stored.model!r} has another rollout in progress ({describe(other)})"
                    )
            self._update_rollout(conn, row, expected_revision)
            if routing is not None:
                self._write_routing(conn, routing, row.updated_at_s)
            for event in events:
                self._insert_event(conn, event)
        return RolloutRow(
            model=stored.model,
            phase=row.phase,
            spec=stored.spec,
            status=row.status,
            created_at_s=stored.created_at_s,
            updated_at_s=row.updated_at_s,
            revision=expected_revision + 1,
            id=row.id,
        )

    def _update_rollout(self, conn: Connection, row: RolloutRow, expected_revision: int) -> None:
        c = t.rollouts.c
        count = conn.execute(
            sa.update(t.rollouts)
            .where(c.id == row.id, c.revision == expected_revision)
            .values(
                phase=row.phase,
                status=dict(row.status),
                updated_at_s=row.updated_at_s,
                revision=c.revision + 1,
            )
        ).rowcount
        if count != 1:
            # The callers checked the revision under the lock every rollout writer
            # takes; reaching this means a writer that skipped the lock.
            raise Conflict(f"rollout #{row.id} changed meanwhile; try again")

    def _check_fence(self, conn: Connection, name: str, holder: str, epoch: int) -> None:
        # A shared row lock: a rival's acquire_lease waits until this save commits,
        # so the lease cannot change hands between this check and the write.
        current = conn.execute(
            sa.select(t.leases.c.holder, t.leases.c.epoch)
            .where(t.leases.c.name == name)
            .with_for_update(read=True)
        ).first()
        if current is None or (current.holder, current.epoch) != (holder, epoch):
            raise Conflict(f"lease {name!r} is no longer held by {holder}")

    def get_rollout(self, rollout_id: int) -> RolloutRow | None:
        with self._tx("reading a rollout", write=False) as conn:
            found = conn.execute(sa.select(t.rollouts).where(t.rollouts.c.id == rollout_id)).first()
        return None if found is None else rollout_of(found)

    def latest_rollout(self, model: str) -> RolloutRow | None:
        """The model's newest rollout, whatever its phase."""
        rows = self.list_rollouts(model, limit=1)
        return rows[0] if rows else None

    def list_rollouts(
        self, model: str | None = None, *, active_only: bool = False, limit: int | None = 100
    ) -> list[RolloutRow]:
        """Rollouts newest first, at most ``limit`` (None: all)."""
        if limit is not None and limit <= 0:
            return []
        c = t.rollouts.c
        query = sa.select(t.rollouts).order_by(c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        if model is not None:
            query = query.where(c.model == model)
        if active_only:
            query = query.where(c.phase.in_(ACTIVE_PHASES))
        with self._tx("listing rollouts", write=False) as conn:
            rows = conn.execute(query).all()
        return [rollout_of(r) for r in rows]

    # leases -------------------------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, now_s: float, ttl_s: float) -> Lease | None:
        """Take or renew the lease until ``now_s + ttl_s``: when nobody holds it, when
        its holder's time ran out (expires_at_s < now_s), or when ``holder`` has it
        already. None when someone else holds it.

        The epoch starts at 1, grows by one whenever the holder changes and stays on
        renewal. One statement (an upsert whose update is conditional) decides, so two
        processes racing can never both take the lease.
        """
        if not holder:
            raise ValidationError("a lease holder needs a name")
        if not ttl_s > 0:
            raise ValidationError(f"lease {name!r}: ttl_s must be positive, not {ttl_s}")
        c = t.leases.c
        stmt = self._insert(t.leases).values(
            name=name, holder=holder, epoch=1, expires_at_s=now_s + ttl_s
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[c.name],
            set_={
                "holder": stmt.excluded.holder,
                "expires_at_s": stmt.excluded.expires_at_s,
                "epoch": sa.case((c.holder == stmt.excluded.holder, c.epoch), else_=c.epoch + 1),
            },
            # Only then is the lease ours; otherwise the row stays as it is and the
            # statement returns nothing.
            where=sa.or_(c.holder == stmt.excluded.holder, c.holder == "", c.expires_at_s < now_s),
        ).returning(*t.leases.c)
        with self._tx(f"acquiring lease {name!r}", write=True) as conn:
            taken = conn.execute(stmt).first()
        return None if taken is None else lease_of(taken)

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up, if ``holder`` holds it; anyone may take it next.

        The row stays, with no holder, so that the next holder's epoch is higher than
        every earlier one.
        """
        c = t.leases.c
        with self._tx(f"releasing lease {name!r}", write=True) as conn:
            conn.execute(
                sa.update(t.leases)
                .where(c.name == name, c.holder == holder)
                .values(holder="", expires_at_s=0.0)
            )

    def get_lease(self, name: str) -> Lease | None:
        """The lease as stored, possibly expired; None when nobody holds it."""
        c = t.leases.c
        with self._tx("reading a lease", write=False) as conn:
            found = conn.execute(sa.select(t.leases).where(c.name == name, c.holder != "")).first()
        return None if found is None else lease_of(found)


def _check_routing_of(routing: Routing, model: str) -> None:
    if routing.model != model:
        raise ValidationError(
            f"the rollout is of model {model!r} but the routing is for {routing.model!r}"
        )
    check_shares(routing)
