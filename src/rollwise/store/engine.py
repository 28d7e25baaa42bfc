"""Store URLs and the SQLAlchemy engines behind them, set up for SQLite or PostgreSQL.

A user writes ``sqlite:///rollwise.db``, ``sqlite://`` (in memory) or
``postgresql://user@host:port/db``; this module checks the URL, picks the driver rollwise
ships with, and configures the connection the way the store's transactions expect.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from rollwise.errors import ConfigError
from rollwise.store.jsontext import dumps_json, loads_json

SQLITE_BUSY_TIMEOUT_MS = 15_000
"""How long a SQLite writer waits for another writer before giving up.

Writers hold the lock for milliseconds (one flush or one routing change), so a long
wait only ever means a stuck process, never ordinary contention.
"""

POSTGRES_CONNECT_TIMEOUT_S = 10

BEGIN_MODE_OPTION = "rollwise_sqlite_begin"
"""Execution option naming the ``BEGIN`` a SQLite transaction starts with."""

URL_HELP = "expected sqlite:///path.db, sqlite:// (in memory) or postgresql://user@host:port/db"

Dialect = Literal["sqlite", "postgresql"]


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A checked store URL: the SQLAlchemy URL to connect with and what it points at."""

    sa_url: URL
    dialect: Dialect
    in_memory: bool = False

    @property
    def display(self) -> str:
        """The URL with any password masked, fit for logs and error messages."""
        text = self.sa_url.render_as_string(hide_password=True)
        return text.replace("postgresql+psycopg://", "postgresql://", 1)


def parse_store_url(url: str) -> StoreURL:
    """Check a user's store URL and map it to the driver rollwise uses.

    Relative SQLite paths are resolved against the current directory now, so that a
    process that changes directory later keeps using the same file.
    """
    try:
        parsed = sa.make_url(url)
    except ArgumentError:
        raise ConfigError(f"store URL {url!r} is not a database URL; {URL_HELP}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise ConfigError(
                f"store URL {url!r} asks for SQLite driver {driver!r}; "
                "rollwise uses the built-in sqlite3 driver (write sqlite:///path.db)"
            )
        if parsed.host or parsed.username or parsed.port:
            raise ConfigError(
                f"store URL {url!r} names a host, but SQLite is a local file; "
                "write sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        database = parsed.database
        if database in (None, ":memory:"):
            return StoreURL(parsed.set(drivername="sqlite", database=None), "sqlite", True)
        if database == "":
            raise ConfigError(f"store URL {url!r} has no file path; {URL_HELP}")
        path = os.path.abspath(database)
        return StoreURL(parsed.set(drivername="sqlite", database=path), "sqlite")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise ConfigError(
                f"store URL {url!r} asks for PostgreSQL driver {driver!r}; "
                "rollwise uses psycopg 3 (write postgresql://user@host:port/db)"
            )
        return StoreURL(parsed.set(drivername="postgresql+psycopg"), "postgresql")
    raise ConfigError(f"store URL {url!r} uses unsupported database {backend!r}; {URL_HELP}")


def create_store_engine(url: StoreURL) -> Engine:
    """An engine whose transactions behave the same on SQLite and PostgreSQL."""
    common: dict[str, Any] = {
        "json_serializer": dumps_json,
        "json_deserializer": loads_json,
    }
    if url.dialect == "sqlite":
        return _sqlite_engine(url, common)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"the store {url.display} is PostgreSQL, and its driver is not installed: "
            "pip install 'rollwise[postgres]'"
        ) from None
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.sa_url.query:
        connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_S
    return sa.create_engine(
        url.sa_url,
        connect_args=connect_args,
        # Replicas keep connections for days; a database restart must not surface as
        # a failed request, so each checkout is checked first.
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        **common,
    )


def _sqlite_engine(url: StoreURL, common: Mapping[str, Any]) -> Engine:
    connect_args: dict[str, Any] = {"check_same_thread": False}
    if url.in_memory:
        # One connection shared by every thread: each new connection to ":memory:"
        # would be a different, empty database. The store serialises access to it.
        engine = sa.create_engine(
            url.sa_url, connect_args=connect_args, poolclass=StaticPool, **common
        )
    else:
        engine = sa.create_engine(
            url.sa_url,
            connect_args=connect_args,
            # The gateway calls the store from many worker threads; readers never
            # block each other in WAL mode, so give them each a connection.
            pool_size=8,
            max_overflow=24,
            **common,
        )
    in_memory = url.in_memory

    def _use_wal(cursor: Any) -> None:
        # WAL is a property of the file: once set, later connections only read it. While
        # another process is creating the file or switching it, SQLite can answer
        # "database is locked" without consulting the busy timeout, so retry a while.
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    cursor.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # The sqlite3 module's own transaction handling skips BEGIN before SELECT and
        # DDL; rollwise emits BEGIN itself (see on_begin) so transactions mean what
        # they say, including the DDL of migrations.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # The busy timeout comes first so that switching to WAL, which needs a
            # moment of exclusive access, waits for other processes instead of failing.
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            if not in_memory:
                _use_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    def on_begin(conn: Connection) -> None:
        # Writers start with BEGIN IMMEDIATE: a deferred transaction that reads and
        # then writes cannot wait for the write lock and fails with "database is
        # locked" at once, whatever the busy timeout. Readers keep a plain BEGIN, which
        # in WAL mode never waits for writers.
        mode = conn.get_execution_options().get(BEGIN_MODE_OPTION, "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    return engine
