"""Connection and transaction plumbing that every aggregate of the SQL store shares.

``SqlBase`` owns the engine and hands the aggregates' mixins one short transaction at a
time (``_tx``), turning database errors into ``StoreError``. It also holds what several
aggregates write alike: the state lock and counter that writers of routing, rollouts
and the catalog queue on, events, upserts, batch inserts and pruning in chunks.

Writers of state queue on one lock (the state counter's row on PostgreSQL, the write
lock on SQLite) before they look at anything, so a check ("does this model have a
rollout in progress?") and the write that depends on it never interleave with another
writer's; and they take their locks in one order (state counter, lease, rollout row,
events), so they never deadlock.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError, StatementError

from rollwise.domain import Event, Routing
from rollwise.errors import NotFound, StoreError
from rollwise.store import schema as t
from rollwise.store.engine import BEGIN_MODE_OPTION, StoreURL
from rollwise.store.jsontext import UnstorableValue, dumps_json
from rollwise.store.rows import routing_values

# PostgreSQL advisory lock keys; 0x726F6C6C77697365 is "rollwise" in ASCII.
MIGRATE_LOCK_KEY = 0x726F6C6C77697365
EVENTS_LOCK_KEY = MIGRATE_LOCK_KEY + 1

_SQLITE_MAX_VARIABLES = 32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999
"""Parameters SQLite takes in one statement by default (999 before version 3.32)."""

PRUNE_CHUNK = 5_000
"""Rows deleted per transaction when pruning, so that a large prune never holds the
write lock long enough to stall the gateway's flushes."""

# PostgreSQL's codes for a missing table and column: the schema is older than the code.
_SCHEMA_BEHIND = ("42P01", "42703")


class SqlBase:
    """The engine, its transactions and the writes every aggregate shares.

    ``url`` is the store URL with any password masked.
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
            raise store_error(action, self.url, exc) from exc

    # the state counter --------------------------------------------------------------
    def _lock_state(self, conn: Connection) -> None:
        """Queue behind every other writer of state until commit.

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

    def state_version(self) -> int:
        """A counter bumped by every write of routing or of the catalog."""
        with self._tx("reading the state version", write=False) as conn:
            version = conn.execute(
                sa.select(t.state_counter.c.version).where(t.state_counter.c.id == t.STATE_ROW_ID)
            ).scalar_one_or_none()
        if version is None:
            raise StoreError(f"the store at {self.url} has no state counter; run migrate()")
        return int(version)

    # shared writes ------------------------------------------------------------------
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

    def _upsert(
        self,
        conn: Connection,
        table: sa.Table,
        values: Mapping[str, Any],
        keys: Sequence[str],
        *,
        keep: Collection[str] = (),
    ) -> None:
        """Insert ``values``, or update the row with the same ``keys`` with every other
        value except those named in ``keep``."""
        stmt = self._insert(table).values(**values)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[table.c[key] for key in keys],
                set_={k: stmt.excluded[k] for k in values if k not in keys and k not in keep},
            )
        )

    def _write_routing(self, conn: Connection, routing: Routing, at_s: float) -> None:
        """Store a model's routing and bump the counter that tells replicas to re-read."""
        self._bump_state(conn)
        self._upsert(conn, t.routing, routing_values(routing, at_s), keys=("model",))

    def _check_model(self, conn: Connection, model: str) -> None:
        known = conn.execute(sa.select(t.models.c.name).where(t.models.c.name == model)).first()
        if known is None:
            raise NotFound(f"model {model!r} is not in the store")

    def _insert_many(
        self,
        action: str,
        table: sa.Table,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
    ) -> None:
        """Insert a batch in one transaction: multi-row INSERTs on SQLite, COPY on
        PostgreSQL. ``rows`` hold values in ``columns`` order (JSON columns not yet
        encoded) and are read once, as the statements go: a batch of any size never
        has more than one statement's worth of encoded values in memory."""
        with self._tx(action, write=True) as conn:
            if self._postgres:
                _copy_rows(conn, table, columns, rows)
            else:
                _insert_rows(conn, table, columns, rows)

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


def _insert_rows(
    conn: Connection, table: sa.Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    # Many rows per statement, bound by the driver in C, with JSON encoded here: with
    # executemany, one statement per row, the driver let go of the GIL and took it back
    # around every row, and under load each row then waited for the event loop's thread
    # to hand the GIL over, so the flush of a second's predictions slowed the requests
    # and fell behind them. SQLAlchemy's own bind processing cost several times the
    # insert itself.
    json_at = _json_positions(table, columns)
    per_statement = max(1, _SQLITE_MAX_VARIABLES // len(columns))
    head = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES "
    one = f"({', '.join('?' for _ in columns)})"
    full = head + ", ".join([one] * per_statement)
    values: list[Any] = []
    count = 0
    for row in rows:
        values += _encoded(row, json_at, len(columns))
        count += 1
        if count == per_statement:
            conn.exec_driver_sql(full, tuple(values))
            values = []
            count = 0
    if count:
        conn.exec_driver_sql(head + ", ".join([one] * count), tuple(values))


def _json_positions(table: sa.Table, columns: Sequence[str]) -> list[int]:
    return [i for i, name in enumerate(columns) if isinstance(table.c[name].type, sa.JSON)]


def _encoded(row: Sequence[Any], json_at: list[int], width: int) -> list[Any]:
    """``row`` as a list with its JSON columns encoded; per row of a batch, so only the
    JSON positions are visited (a comprehension over every value cost more than the
    insert's own binding)."""
    if len(row) != width:
        raise ValueError(f"a row has {len(row)} values for {width} columns")
    values = list(row)
    for i in json_at:
        values[i] = dumps_json(values[i])
    return values


def _copy_rows(
    conn: Connection, table: sa.Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    # COPY takes a batch several times faster than executemany (which sends one
    # statement per row) and costs the shared database far less work per row.
    json_at = _json_positions(table, columns)
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
                copy.write_row(_encoded(row, json_at, len(columns)))
    except driver_error as exc:
        # Raised straight from the driver, so wrapped here as SQLAlchemy would.
        raise DBAPIError.instance(statement, None, exc, driver_error) from exc


def detail(exc: BaseException) -> str:
    """The driver's own words, first line only: SQLAlchemy appends SQL and parameters."""
    orig = getattr(exc, "orig", None)
    source = orig if isinstance(orig, BaseException) else exc
    lines = str(source).strip().splitlines()
    return lines[0] if lines else type(source).__name__


def store_error(action: str, url: str, exc: SQLAlchemyError) -> StoreError:
    said = detail(exc)
    if isinstance(exc, StatementError) and isinstance(exc.orig, UnstorableValue):
        return StoreError(f"{action} failed: a value cannot be stored as JSON ({said})")
    if isinstance(exc, DBAPIError) and _schema_behind(exc, said):
        return StoreError(
            f"{action} failed: the store at {url} has no rollwise schema or an old one "
            f"({said}); run migrate() (rollwise migrate) first"
        )
    return StoreError(f"{action} failed on the store at {url}: {said}")


def _schema_behind(exc: DBAPIError, said: str) -> bool:
    return (
        getattr(exc.orig, "sqlstate", None) in _SCHEMA_BEHIND
        or "no such table" in said
        or "no such column" in said
    )
