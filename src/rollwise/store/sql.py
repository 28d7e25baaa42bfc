"""The SQL store: the ``Store`` contract on SQLite or PostgreSQL through SQLAlchemy Core.

Every method runs in its own short transaction. Writes that change state (routing) bump
the state counter and append their event in that same transaction, so readers see
either the whole change or none of it. Database errors leave as ``StoreError``.

Writers of routing and rollouts queue on one lock (the state counter's row on
PostgreSQL, the write lock on SQLite) before they look at anything, so the check "does
this model have a rollout in progress?" and the write that depends on it can never
interleave with another writer's; and they take their locks in one order (state
counter, lease, rollout row, events), so they never deadlock.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import DBAPIError, SQLAlchemyError, StatementError

from rollwise.domain import Event, ModelSpec, Role, Routing
from rollwise.errors import ConfigError, Conflict, NotFound, StoreError, ValidationError
from rollwise.store import schema as t
from rollwise.store.base import (
    ACTIVE_PHASES,
    FeedbackRecord,
    Lease,
    MetricBucketRow,
    PredictionRecord,
    RolloutRow,
    StoredVersion,
)
from rollwise.store.engine import BEGIN_MODE_OPTION, StoreURL
from rollwise.store.jsontext import UnstorableValue, dumps_json

MIGRATIONS = "rollwise.store:migrations"

# PostgreSQL advisory lock keys; 0x726F6C6C77697365 is "rollwise" in ASCII.
MIGRATE_LOCK_KEY = 0x726F6C6C77697365
EVENTS_LOCK_KEY = MIGRATE_LOCK_KEY + 1

PRUNE_CHUNK = 5_000
"""Rows deleted per transaction when pruning, so that a large prune never holds the
write lock long enough to stall the gateway's flushes."""

EVENT_ROUTING_INITIALIZED = "routing.initialized"
EVENT_ROUTING_RESET = "routing.reset"

_UNDEFINED_TABLE = "42P01"


class SqlStore:
    """The store on one database; thread-safe, one instance per process.

    ``url`` is the store URL with any password masked. Open one with
    ``rollwise.store.open_store``.
    """

    url: str

    def __init__(self, url: StoreURL, engine: Engine) -> None:
        self.url = url.display
        self._target = url
        self._engine = engine
        self._postgres = url.dialect == "postgresql"
        self._insert: Callable[[sa.Table], Any] = (
            postgresql.insert if self._postgres else sqlite.insert
        )
        # An in-memory SQLite database is one connection shared by all threads, and
        # SQLite connections interleave transactions of different threads.
        self._serial: threading.RLock | None = threading.RLock() if url.in_memory else None
        # SQLite admits one writer at a time. Queued on a lock, this process's writers
        # take turns the moment the previous one commits; queued in SQLite's busy
        # handler they would poll with sleeps of up to 100 ms. Writers in other
        # processes still wait through the busy timeout.
        self._writer: threading.Lock | None = (
            threading.Lock() if url.dialect == "sqlite" and not url.in_memory else None
        )

    # lifecycle ----------------------------------------------------------------------
    def check_connection(self) -> None:
        """Connect once, raising ``StoreError`` that says why when that fails."""
        try:
            with self._guard(write=False), self._engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            detail = _detail(exc)
            if not self._postgres and "unable to open" in detail:
                folder = Path(self._target.sa_url.database or ".").parent
                detail += f" (does the folder {folder} exist, and may this process write there?)"
            raise StoreError(f"cannot connect to the store at {self.url}: {detail}") from exc

    def migrate(self) -> None:
        """Bring the schema to the newest revision; a no-op when it is there already.

        Safe when several processes start at once: on PostgreSQL they queue on an
        advisory lock, on SQLite on the write lock, and each upgrade is one transaction.
        """
        config = _alembic_config()
        script = ScriptDirectory.from_config(config)
        try:
            with self._guard(write=True), self._engine.connect() as conn:
                if not self._postgres:
                    # With foreign keys on, a migration that rebuilds a parent table
                    # (SQLite's only way to alter one) would cascade-delete its children.
                    _sqlite_pragma(conn, "PRAGMA foreign_keys = OFF")
                try:
                    with conn.begin():
                        if self._postgres:
                            # Replicas starting together queue here; the later ones then
                            # find the schema current and do nothing.
                            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATE_LOCK_KEY)))
                        self._check_revision(conn, script)
                        config.attributes["connection"] = conn
                        command.upgrade(config, "head")
                        if not self._postgres:
                            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                            if broken:
                                raise StoreError(
                                    f"migrating {self.url} left rows whose parent is missing: "
                                    f"{broken[:5]}"
                                )
                finally:
                    if not self._postgres:
                        _sqlite_pragma(conn, "PRAGMA foreign_keys = ON")
        except (SQLAlchemyError, CommandError) as exc:
            raise StoreError(f"migrating the store at {self.url} failed: {_detail(exc)}") from exc

    def _check_revision(self, conn: Connection, script: ScriptDirectory) -> None:
        """Refuse a database that a newer rollwise has migrated past our newest revision."""
        context = MigrationContext.configure(conn, opts={"version_table": t.VERSION_TABLE})
        unknown = sorted(rev for rev in context.get_current_heads() if not _known(script, rev))
        if unknown:
            raise StoreError(
                f"the store at {self.url} is at schema revision {', '.join(unknown)}, newer "
                f"than this rollwise knows (newest: {', '.join(script.get_heads())}); "
                "upgrade rollwise here"
            )

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # transactions -------------------------------------------------------------------
    def _guard(self, *, write: bool) -> AbstractContextManager[Any]:
        if self._serial is not None:
            return self._serial
        if write and self._writer is not None:
            return self._writer
        return nullcontext()

    @contextmanager
    def _tx(self, action: str, *, write: bool) -> Iterator[Connection]:
        """One transaction; a database error inside it becomes a ``StoreError``."""
        try:
            with self._guard(write=write), self._engine.connect() as conn:
                if not write:
                    conn.execution_options(**{BEGIN_MODE_OPTION: "DEFERRED"})
                with conn.begin():
                    yield conn
        except UnstorableValue as exc:
            # psycopg encodes JSON itself, so this arrives without SQLAlchemy's wrapper.
            raise StoreError(f"{action} failed: a value cannot be stored as JSON ({exc})") from exc
        except SQLAlchemyError as exc:
            raise _store_error(action, self.url, exc) from exc

    def _lock_state(self, conn: Connection) -> None:
        """Queue behind every other writer of routing and rollouts until commit.

        On PostgreSQL this locks the state counter's row; on SQLite the transaction
        already holds the database's write lock (BEGIN IMMEDIATE) and this is a read.
        """
        conn.execute(
            sa.select(t.state_counter.c.version)
            .where(t.state_counter.c.id == t.STATE_ROW_ID)
            .with_for_update()
        )

    def _bump_state(self, conn: Connection) -> None:
        # Callers lock this row first (_lock_state), before their checks; this never waits.
        conn.execute(
            sa.update(t.state_counter)
            .where(t.state_counter.c.id == t.STATE_ROW_ID)
            .values(version=t.state_counter.c.version + 1)
        )

    def _insert_event(self, conn: Connection, event: Event) -> Event:
        if self._postgres:
            # Sequence values are handed out at insert but become visible at commit,
            # so without this lock a reader paging by after_id could pass over an
            # event that commits later with a smaller id. Events are rare; queueing
            # their writers costs nothing.
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(EVENTS_LOCK_KEY)))
        result = conn.execute(
            sa.insert(t.events).values(
                model=event.model,
                kind=event.kind,
                message=event.message,
                data=dict(event.data),
                actor=event.actor,
                at_s=event.at_s,
            )
        )
        key = result.inserted_primary_key
        if key is None:
            raise StoreError(f"the store at {self.url} did not return the new event's id")
        return dataclasses.replace(event, id=int(key[0]))

    def _upsert_routing(self, conn: Connection, routing: Routing, at_s: float) -> None:
        values = {
            "model": routing.model,
            "stable": routing.stable,
            "weights": dict(routing.weights),
            "mirrors": dict(routing.mirrors),
            "salt": routing.salt,
            "updated_at_s": at_s,
        }
        stmt = self._insert(t.routing).values(**values)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[t.routing.c.model],
                set_={k: stmt.excluded[k] for k in values if k != "model"},
            )
        )

    # models and versions ------------------------------------------------------------
    def sync_models(self, models: Sequence[ModelSpec], now_s: float) -> list[Event]:
        """Record the configured models and versions; (re)initialise routing that is
        missing or names a version no longer configured. Returns the events written.

        Models absent from ``models`` are left as they are: during a rolling config
        change, other replicas may still serve them.
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
                self._sync_model(conn, model, now_s)
            names = [model.name for model in models]
            stored = {
                row.model: _routing(row)
                for row in conn.execute(sa.select(t.routing).where(t.routing.c.model.in_(names)))
            }
            for model in models:
                change = _routing_to_initialise(model, stored.get(model.name), now_s)
                if change is None:
                    continue
                routing, event = change
                self._bump_state(conn)
                self._upsert_routing(conn, routing, now_s)
                written.append(self._insert_event(conn, event))
        return written

    def _sync_model(self, conn: Connection, model: ModelSpec, now_s: float) -> None:
        values = {
            "name": model.name,
            "stable": model.stable,
            "sticky_key": str(model.sticky_key) if model.sticky_key else None,
            "task": model.task,
            "created_at_s": now_s,
            "updated_at_s": now_s,
        }
        stmt = self._insert(t.models).values(**values)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[t.models.c.name],
                set_={k: stmt.excluded[k] for k in values if k not in ("name", "created_at_s")},
            )
        )
        conn.execute(
            sa.delete(t.versions).where(
                t.versions.c.model == model.name, t.versions.c.name.not_in(list(model.versions))
            )
        )
        for name, spec in model.versions.items():
            version_values = {
                "model": model.name,
                "name": name,
                "backend": spec.backend,
                "options": dict(spec.options),
                "updated_at_s": now_s,
            }
            vstmt = self._insert(t.versions).values(**version_values)
            conn.execute(
                vstmt.on_conflict_do_update(
                    index_elements=[t.versions.c.model, t.versions.c.name],
                    set_={k: vstmt.excluded[k] for k in ("backend", "options", "updated_at_s")},
                )
            )

    def list_versions(self, model: str | None = None) -> list[StoredVersion]:
        query = sa.select(t.versions).order_by(t.versions.c.model, t.versions.c.name)
        if model is not None:
            query = query.where(t.versions.c.model == model)
        with self._tx("listing versions", write=False) as conn:
            rows = conn.execute(query).all()
        return [
            StoredVersion(model=r.model, name=r.name, backend=r.backend, options=r.options)
            for r in rows
        ]

    # routing ------------------------------------------------------------------------
    def get_routing(self, model: str) -> Routing | None:
        with self._tx("reading routing", write=False) as conn:
            row = conn.execute(sa.select(t.routing).where(t.routing.c.model == model)).first()
        return None if row is None else _routing(row)

    def list_routings(self) -> list[Routing]:
        with self._tx("listing routing", write=False) as conn:
            rows = conn.execute(sa.select(t.routing).order_by(t.routing.c.model)).all()
        return [_routing(row) for row in rows]

    def set_routing(self, routing: Routing, event: Event, *, force: bool = False) -> Event:
        """Replace a model's routing and append its event in one transaction.

        Raises ``NotFound`` for a model that ``sync_models`` never recorded,
        ``ValidationError`` for weights that do not sum to 100 and ``Conflict`` while
        the model has a rollout in progress (its controller owns the routing and would
        undo the change), unless ``force``.
        """
        _check_routing(routing, event)
        with self._tx(f"setting the routing of {routing.model}", write=True) as conn:
            # Locked before the check, so a rollout cannot start between the two.
            self._lock_state(conn)
            self._check_model(conn, routing.model)
            if not force:
                active = self._active_rollout(conn, routing.model)
                if active is not None:
                    raise Conflict(
                        f"model {routing.model!r} has a rollout in progress "
                        f"({_describe(active)}); abort or promote it first, or force"
                    )
            self._bump_state(conn)
            self._upsert_routing(conn, routing, event.at_s)
            return self._insert_event(conn, event)

    def _check_model(self, conn: Connection, model: str) -> None:
        known = conn.execute(sa.select(t.models.c.name).where(t.models.c.name == model)).first()
        if known is None:
            raise NotFound(f"model {model!r} is not in the store")

    def state_version(self) -> int:
        with self._tx("reading the state version", write=False) as conn:
            version = conn.execute(
                sa.select(t.state_counter.c.version).where(t.state_counter.c.id == t.STATE_ROW_ID)
            ).scalar_one_or_none()
        if version is None:
            raise StoreError(f"the store at {self.url} has no state counter; run migrate()")
        return int(version)

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
            active = self._active_rollout(conn, row.model)
            if active is not None and replacing is None:
                raise Conflict(
                    f"model {row.model!r} has a rollout in progress ({_describe(active)}, "
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
                self._bump_state(conn)
                self._upsert_routing(conn, routing, row.updated_at_s)
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
                other = self._active_rollout(conn, stored.model)
                if other is not None and other.id != row.id:
                    raise Conflict(
                        f"rollout #{row.id} cannot go back to {row.phase!r}: model "
                        f"{stored.model!r} has another rollout in progress ({_describe(other)})"
                    )
            self._update_rollout(conn, row, expected_revision)
            if routing is not None:
                self._bump_state(conn)
                self._upsert_routing(conn, routing, row.updated_at_s)
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

    def _active_rollout(self, conn: Connection, model: str) -> RolloutRow | None:
        c = t.rollouts.c
        found = conn.execute(
            sa.select(t.rollouts)
            .where(c.model == model, c.phase.in_(ACTIVE_PHASES))
            .order_by(c.id.desc())
            .limit(1)
        ).first()
        return None if found is None else _rollout(found)

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
        return None if found is None else _rollout(found)

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
        return [_rollout(r) for r in rows]

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
        return None if taken is None else _lease(taken)

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
        return None if found is None else _lease(found)

    # events -------------------------------------------------------------------------
    def add_event(self, event: Event) -> Event:
        with self._tx(f"adding a {event.kind} event", write=True) as conn:
            return self._insert_event(conn, event)

    def list_events(
        self, model: str | None = None, after_id: int = 0, limit: int = 100, latest: bool = False
    ) -> list[Event]:
        """Events with id > after_id, oldest first, at most ``limit`` (the newest
        ``limit`` of them with ``latest``)."""
        if limit <= 0:
            return []
        query = sa.select(t.events).where(t.events.c.id > after_id)
        if model is not None:
            query = query.where(t.events.c.model == model)
        newest_first = t.events.c.id.desc() if latest else t.events.c.id
        query = query.order_by(newest_first).limit(limit)
        with self._tx("listing events", write=False) as conn:
            rows = conn.execute(query).all()
        if latest:
            rows = list(reversed(rows))
        return [
            Event(
                model=r.model,
                kind=r.kind,
                message=r.message,
                data=r.data,
                at_s=r.at_s,
                id=int(r.id),
                actor=r.actor,
            )
            for r in rows
        ]

    # metrics ------------------------------------------------------------------------
    def write_metric_buckets(self, rows: Sequence[MetricBucketRow]) -> None:
        if not rows:
            return
        params = [
            {
                "model": r.model,
                "version": r.version,
                "role": Role(r.role).value,
                "start_s": r.start_s,
                "width_s": r.width_s,
                "replica": r.replica,
                "payload": r.payload,
            }
            for r in rows
        ]
        self._insert_many(f"writing {len(rows)} metric buckets", t.metric_buckets, params)

    def read_metric_buckets(
        self,
        model: str,
        since_s: float,
        until_s: float | None = None,
        version: str | None = None,
        role: Role | None = None,
    ) -> list[MetricBucketRow]:
        """Rows with since_s <= start_s < until_s, oldest first."""
        c = t.metric_buckets.c
        query = sa.select(t.metric_buckets).where(c.model == model, c.start_s >= since_s)
        if until_s is not None:
            query = query.where(c.start_s < until_s)
        if version is not None:
            query = query.where(c.version == version)
        if role is not None:
            query = query.where(c.role == Role(role).value)
        query = query.order_by(c.start_s, c.id)
        with self._tx("reading metric buckets", write=False) as conn:
            rows = conn.execute(query).all()
        return [
            MetricBucketRow(
                model=r.model,
                version=r.version,
                role=Role(r.role),
                start_s=int(r.start_s),
                width_s=int(r.width_s),
                replica=r.replica,
                payload=r.payload,
            )
            for r in rows
        ]

    def prune_metric_buckets(self, older_than_s: float) -> int:
        return self._prune(
            t.metric_buckets, t.metric_buckets.c.start_s < older_than_s, "metric buckets"
        )

    # predictions and feedback -------------------------------------------------------
    def log_predictions(self, records: Sequence[PredictionRecord]) -> None:
        if not records:
            return
        params = [
            {
                "request_id": r.request_id,
                "model": r.model,
                "version": r.version,
                "role": Role(r.role).value,
                "outputs": r.outputs,
                "at_s": r.at_s,
            }
            for r in records
        ]
        self._insert_many(f"logging {len(records)} predictions", t.predictions, params)

    def get_predictions(self, request_id: str) -> list[PredictionRecord]:
        """Every version's answer to one request (served first, then shadows)."""
        query = (
            sa.select(t.predictions)
            .where(t.predictions.c.request_id == request_id)
            .order_by(t.predictions.c.id)
        )
        with self._tx("reading predictions", write=False) as conn:
            rows = conn.execute(query).all()
        records = [
            PredictionRecord(
                request_id=r.request_id,
                model=r.model,
                version=r.version,
                role=Role(r.role),
                outputs=r.outputs,
                at_s=r.at_s,
            )
            for r in rows
        ]
        # A stable sort: served answers first, each group in the order it was logged.
        return sorted(records, key=lambda rec: rec.role is not Role.SERVED)

    def prune_predictions(self, older_than_s: float) -> int:
        return self._prune(t.predictions, t.predictions.c.at_s < older_than_s, "predictions")

    def prune_feedback(self, older_than_s: float) -> int:
        table = t.feedback
        return self._prune(table, table.c.at_s < older_than_s, "feedback", table.c.request_id)

    def record_feedback(self, feedback: FeedbackRecord) -> bool:
        """Store a label once; False when the request already has feedback."""
        stmt = (
            self._insert(t.feedback)
            .values(
                request_id=feedback.request_id,
                model=feedback.model,
                label=feedback.label,
                at_s=feedback.at_s,
            )
            .on_conflict_do_nothing(index_elements=[t.feedback.c.request_id])
            # SQLAlchemy forgets an INSERT's row count unless asked to keep it.
            .execution_options(preserve_rowcount=True)
        )
        with self._tx(f"recording feedback for {feedback.request_id}", write=True) as conn:
            return conn.execute(stmt).rowcount == 1

    def get_feedback(self, request_id: str) -> FeedbackRecord | None:
        with self._tx("reading feedback", write=False) as conn:
            row = conn.execute(
                sa.select(t.feedback).where(t.feedback.c.request_id == request_id)
            ).first()
        if row is None:
            return None
        return FeedbackRecord(
            request_id=row.request_id, model=row.model, label=row.label, at_s=row.at_s
        )

    # helpers ------------------------------------------------------------------------
    def _insert_many(self, action: str, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """Insert a batch in one transaction: executemany on SQLite, COPY on PostgreSQL."""
        with self._tx(action, write=True) as conn:
            if self._postgres:
                _copy_rows(conn, table, rows)
            else:
                _executemany_rows(conn, table, rows)

    def _prune(
        self,
        table: sa.Table,
        condition: sa.ColumnElement[bool],
        what: str,
        key: sa.Column[Any] | None = None,
    ) -> int:
        key = table.c.id if key is None else key
        chunk = sa.select(key).where(condition).limit(PRUNE_CHUNK).scalar_subquery()
        deleted = 0
        while True:
            with self._tx(f"pruning {what}", write=True) as conn:
                count = conn.execute(sa.delete(table).where(key.in_(chunk))).rowcount
            deleted += count
            if count < PRUNE_CHUNK:
                return deleted


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return config


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def _executemany_rows(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    # The driver's own executemany with JSON encoded up front: these batches arrive every
    # second from the request path, and SQLAlchemy's per-row bind processing costs the
    # gateway's threads several times more than the insert itself.
    columns = list(rows[0])
    encode = [isinstance(table.c[name].type, sa.JSON) for name in columns]
    statement = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)})"
    )
    values = [
        tuple(
            dumps_json(row[name]) if json else row[name]
            for name, json in zip(columns, encode, strict=True)
        )
        for row in rows
    ]
    conn.exec_driver_sql(statement, values)


def _copy_rows(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    # COPY takes a batch several times faster than executemany (which sends one
    # statement per row) and costs the shared database far less work per row.
    columns = list(rows[0])
    encode = [isinstance(table.c[name].type, sa.JSON) for name in columns]
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    driver = conn.connection.driver_connection
    if driver is None:
        raise StoreError("the database connection was closed in the middle of a write")
    driver_error = conn.dialect.loaded_dbapi.Error
    try:
        with (
            driver.cursor() as cursor,
            cursor.copy(statement) as copy,
        ):
            for row in rows:
                copy.write_row(
                    [
                        dumps_json(row[name]) if is_json else row[name]
                        for name, is_json in zip(columns, encode, strict=True)
                    ]
                )
    except driver_error as exc:
        # Raised straight from the driver, so wrapped here as SQLAlchemy would.
        raise DBAPIError.instance(statement, None, exc, driver_error) from exc


def _sqlite_pragma(conn: Connection, pragma: str) -> None:
    # PRAGMA foreign_keys is ignored inside a transaction, and every statement through
    # SQLAlchemy opens one, so this goes straight to the driver.
    dbapi = conn.connection.dbapi_connection
    if dbapi is None:
        raise StoreError("the SQLite connection was closed during migration")
    dbapi.cursor().execute(pragma)


def _routing_to_initialise(
    model: ModelSpec, stored: Routing | None, now_s: float
) -> tuple[Routing, Event] | None:
    """The routing ``sync_models`` writes for a model, with its event; None to keep it."""
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
    missing = sorted(_named_versions(stored) - set(model.versions))
    if not missing:
        return None
    return fresh, Event(
        model=model.name,
        kind=EVENT_ROUTING_RESET,
        message=(
            f"stored routing of model {model.name} names "
            f"{'version' if len(missing) == 1 else 'versions'} {', '.join(missing)}, "
            f"no longer configured: 100 % back on its stable version {model.stable}"
        ),
        data={
            "routing": fresh.to_dict(),
            "previous": stored.to_dict(),
            "missing_versions": missing,
        },
        at_s=now_s,
    )


def _named_versions(routing: Routing) -> set[str]:
    return {routing.stable, *routing.weights, *routing.mirrors}


def _check_routing(routing: Routing, event: Event) -> None:
    if event.model != routing.model:
        raise ValidationError(
            f"the event is about model {event.model!r} but the routing is for {routing.model!r}"
        )
    _check_shares(routing)


def _check_routing_of(routing: Routing, model: str) -> None:
    if routing.model != model:
        raise ValidationError(
            f"the rollout is of model {model!r} but the routing is for {routing.model!r}"
        )
    _check_shares(routing)


def _check_shares(routing: Routing) -> None:
    total = sum(routing.weights.values())
    if total != 100:
        raise ValidationError(
            f"routing of {routing.model!r}: weights {dict(routing.weights)} sum to {total}, not 100"
        )
    for kind, shares in (("weight", routing.weights), ("mirror", routing.mirrors)):
        for version, percent in shares.items():
            if not 0 <= percent <= 100:
                raise ValidationError(
                    f"routing of {routing.model!r}: {kind} of {version!r} is {percent}, "
                    "outside 0..100"
                )


def _routing(row: Row[Any]) -> Routing:
    return Routing(
        model=row.model,
        stable=row.stable,
        weights=_percent_map(row.weights),
        mirrors=_percent_map(row.mirrors),
        salt=row.salt,
    )


def _rollout(row: Row[Any]) -> RolloutRow:
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


def _describe(rollout: RolloutRow) -> str:
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


def _lease(row: Row[Any]) -> Lease:
    return Lease(
        name=row.name,
        holder=row.holder,
        expires_at_s=row.expires_at_s,
        epoch=int(row.epoch),
    )


def _percent_map(value: Mapping[str, Any] | None) -> dict[str, int]:
    return {str(k): int(v) for k, v in (value or {}).items()}


def _detail(exc: BaseException) -> str:
    """The driver's own words, first line only: SQLAlchemy appends SQL and parameters."""
    orig = getattr(exc, "orig", None)
    source = orig if isinstance(orig, BaseException) else exc
    lines = str(source).strip().splitlines()
    return lines[0] if lines else type(source).__name__


def _store_error(action: str, url: str, exc: SQLAlchemyError) -> StoreError:
    detail = _detail(exc)
    if isinstance(exc, StatementError) and isinstance(exc.orig, UnstorableValue):
        return StoreError(f"{action} failed: a value cannot be stored as JSON ({detail})")
    if isinstance(exc, DBAPIError) and _is_missing_table(exc, detail):
        return StoreError(
            f"{action} failed: the store at {url} has no rollwise schema or an old one "
            f"({detail}); run migrate() (rollwise migrate) first"
        )
    return StoreError(f"{action} failed on the store at {url}: {detail}")


def _is_missing_table(exc: DBAPIError, detail: str) -> bool:
    return getattr(exc.orig, "sqlstate", None) == _UNDEFINED_TABLE or "no such table" in detail
