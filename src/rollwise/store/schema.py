"""The tables of the store at the newest migration, as SQLAlchemy Core metadata.

The store's queries are built from these tables. The migrations in ``migrations/``
create them; a test compares the migrated database with this metadata, so the two
cannot drift apart. Change both together: a new revision, then this module.

Timestamps are float epoch seconds (``*_s``) chosen by the caller. JSON columns hold
compact text on SQLite and ``json`` on PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from rollwise.store.jsontext import dumps_json, loads_json

VERSION_TABLE = "rollwise_alembic_version"
"""Alembic's bookkeeping table, named after rollwise so the store can share a database
with other applications that use Alembic."""

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class _SqliteJson(sa.types.TypeDecorator[Any]):
    """JSON kept in a TEXT column: SQLite gives a column declared JSON numeric affinity,
    which would turn the text ``1`` into the integer 1 and large integers into floats."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str:
        return dumps_json(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else loads_json(value)


Json = sa.JSON().with_variant(_SqliteJson(), "sqlite")

# SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

models = sa.Table(
    "models",
    metadata,
    sa.Column("name", sa.Text(), primary_key=True),
    sa.Column("stable", sa.Text(), nullable=False),
    sa.Column("sticky_key", sa.Text(), nullable=True),
    sa.Column("task", sa.Text(), nullable=False),
    sa.Column("created_at_s", sa.Double(), nullable=False),
    sa.Column("updated_at_s", sa.Double(), nullable=False),
    # Defaults in the database too: during a rolling upgrade, replicas still on the
    # previous rollwise insert rows without these columns.
    sa.Column("salt", sa.Text(), nullable=False, server_default=""),
    sa.Column(
        "agreement_tolerance", sa.Double(), nullable=False, server_default=sa.text("0.000001")
    ),
    sa.Column("source", sa.Text(), nullable=False, server_default="config"),
)

versions = sa.Table(
    "versions",
    metadata,
    sa.Column(
        "model",
        sa.Text(),
        sa.ForeignKey("models.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("name", sa.Text(), primary_key=True),
    sa.Column("backend", sa.Text(), nullable=False),
    # What replicas load: ``requested`` with any moving reference pinned.
    sa.Column("options", Json, nullable=False),
    sa.Column("updated_at_s", sa.Double(), nullable=False),
    sa.Column("source", sa.Text(), nullable=False, server_default="config"),
    sa.Column("requested", Json, nullable=False, server_default=sa.text("'{}'")),
    sa.Column("spec_sha256", sa.Text(), nullable=False, server_default=""),
    sa.Column("artifact_sha256", sa.Text(), nullable=False, server_default=""),
    sa.Column("resolved", Json, nullable=False, server_default=sa.text("'{}'")),
    sa.Column("registered_at_s", sa.Double(), nullable=False, server_default=sa.text("0")),
    sa.Column("keep_loaded", sa.Boolean(), nullable=False, server_default=sa.true()),
)

routing = sa.Table(
    "routing",
    metadata,
    sa.Column(
        "model",
        sa.Text(),
        sa.ForeignKey("models.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("stable", sa.Text(), nullable=False),
    sa.Column("weights", Json, nullable=False),
    sa.Column("mirrors", Json, nullable=False),
    sa.Column("salt", sa.Text(), nullable=False),
    sa.Column("updated_at_s", sa.Double(), nullable=False),
)

state_counter = sa.Table(
    "state_counter",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger(), nullable=False),
    sa.CheckConstraint("id = 1", name="single_row"),
)
STATE_ROW_ID = 1

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("model", sa.Text(), nullable=False),
    sa.Column("kind", sa.Text(), nullable=False),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Column("data", Json, nullable=False),
    sa.Column("actor", sa.Text(), nullable=False),
    sa.Column("at_s", sa.Double(), nullable=False),
    sa.Index(None, "model", "id"),
    # Event ids are never reused, even after the newest events are deleted, so a
    # reader paging with after_id never skips one.
    sqlite_autoincrement=True,
)

metric_buckets = sa.Table(
    "metric_buckets",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("model", sa.Text(), nullable=False),
    sa.Column("version", sa.Text(), nullable=False),
    sa.Column("role", sa.Text(), nullable=False),
    sa.Column("start_s", sa.BigInteger(), nullable=False),
    sa.Column("width_s", sa.Integer(), nullable=False),
    sa.Column("replica", sa.Text(), nullable=False),
    sa.Column("payload", Json, nullable=False),
    sa.Index(None, "model", "start_s"),
    sa.Index(None, "start_s"),
)

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.Text(), nullable=False),
    sa.Column("model", sa.Text(), nullable=False),
    sa.Column("version", sa.Text(), nullable=False),
    sa.Column("role", sa.Text(), nullable=False),
    sa.Column("outputs", Json, nullable=False),
    sa.Column("at_s", sa.Double(), nullable=False),
    sa.Index(None, "request_id"),
    sa.Index(None, "at_s"),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("request_id", sa.Text(), primary_key=True),
    sa.Column("model", sa.Text(), nullable=False),
    sa.Column("label", Json, nullable=False),
    sa.Column("at_s", sa.Double(), nullable=False),
    # The accuracy gate reads one model's labels since a step began.
    sa.Index(None, "model", "at_s"),
)

rollouts = sa.Table(
    "rollouts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "model",
        sa.Text(),
        sa.ForeignKey("models.name", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("phase", sa.Text(), nullable=False),
    # Optimistic concurrency: a save names the revision it read and bumps it.
    sa.Column("revision", sa.BigInteger(), nullable=False),
    sa.Column("spec", Json, nullable=False),
    sa.Column("status", Json, nullable=False),
    sa.Column("created_at_s", sa.Double(), nullable=False),
    sa.Column("updated_at_s", sa.Double(), nullable=False),
    # A model's rollouts, newest first; and the controller's scan of those in progress.
    sa.Index(None, "model", "id"),
    sa.Index(None, "phase"),
    # Rollout ids appear in events and messages; never hand one out twice.
    sqlite_autoincrement=True,
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.Text(), primary_key=True),
    # An empty holder marks a released lease; the row stays so the epoch never goes back.
    sa.Column("holder", sa.Text(), nullable=False),
    sa.Column("epoch", sa.BigInteger(), nullable=False),
    sa.Column("expires_at_s", sa.Double(), nullable=False),
)

replicas = sa.Table(
    "replicas",
    metadata,
    sa.Column("id", sa.Text(), primary_key=True),
    sa.Column("host", sa.Text(), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("started_at_s", sa.Double(), nullable=False),
    sa.Column("last_seen_s", sa.Double(), nullable=False),
    sa.Column("rollwise_version", sa.Text(), nullable=False),
    sa.Column("stopped", sa.Boolean(), nullable=False, server_default=sa.false()),
    # Pruning looks for replicas whose heartbeat stopped long ago.
    sa.Index(None, "last_seen_s"),
)

replica_versions = sa.Table(
    "replica_versions",
    metadata,
    sa.Column(
        "replica",
        sa.Text(),
        sa.ForeignKey("replicas.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # No foreign key to versions: a replica reports what it holds in memory, which
    # may still include a version retired a moment ago.
    sa.Column("model", sa.Text(), primary_key=True),
    sa.Column("version", sa.Text(), primary_key=True),
    sa.Column("health", sa.Text(), nullable=False),
    sa.Column("error", sa.Text(), nullable=False),
    sa.Column("artifact_sha256", sa.Text(), nullable=False),
    sa.Column("updated_at_s", sa.Double(), nullable=False),
)
