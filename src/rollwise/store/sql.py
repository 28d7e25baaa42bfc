"""The SQL store: the ``Store`` contract on SQLite or PostgreSQL through SQLAlchemy Core.

``SqlStore`` is composed of one mixin per aggregate, each in its own module: the
catalog (``catalog``, ``config_sync``), routing with rollouts and leases
(``routing_rollouts``), events (``events``), telemetry (``telemetry``) and the fleet
(``fleet``), all on the plumbing of ``sql_base``. This module adds the store's life:
connecting, migrating the schema and closing.

Every method runs in its own short transaction. Writes that change state bump the state
counter and append their event in that same transaction, so readers see either the
whole change or none of it. Database errors leave as ``StoreError``.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from rollwise.errors import StoreError
from rollwise.store import schema as t
from rollwise.store.config_sync import (
    EVENT_ROUTING_INITIALIZED,
    EVENT_ROUTING_RESET,
    ConfigSync,
)
from rollwise.store.events import Events
from rollwise.store.fleet import Fleet
from rollwise.store.routing_rollouts import RoutingRollouts
from rollwise.store.sql_base import MIGRATE_LOCK_KEY, PRUNE_CHUNK, detail
from rollwise.store.telemetry import Telemetry

__all__ = ["EVENT_ROUTING_INITIALIZED", "EVENT_ROUTING_RESET", "PRUNE_CHUNK", "SqlStore"]

MIGRATIONS = "rollwise.store:migrations"


class SqlStore(ConfigSync, RoutingRollouts, Events, Telemetry, Fleet):
    """The store on one database; thread-safe, one instance per process.

    ``url`` is the store URL with any password masked. Open one with
    ``rollwise.store.open_store``.
    """

    def check_connection(self) -> None:
        """Connect once, raising ``StoreError`` that says why when that fails."""
        try:
            with self._guard(write=False), self._engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            said = detail(exc)
            if not self._postgres and "unable to open" in said:
                folder = Path(self._target.sa_url.database or ".").parent
                said += f" (does the folder {folder} exist, and may this process write there?)"
            raise StoreError(f"cannot connect to the store at {self.url}: {said}") from exc

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
            raise StoreError(f"migrating the store at {self.url} failed: {detail(exc)}") from exc

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


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return config


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


def _sqlite_pragma(conn: Connection, pragma: str) -> None:
    # PRAGMA foreign_keys is ignored inside a transaction, and every statement through
    # SQLAlchemy opens one, so this goes straight to the driver.
    dbapi = conn.connection.dbapi_connection
    if dbapi is None:
        raise StoreError("the SQLite connection was closed during migration")
    dbapi.cursor().execute(pragma)
