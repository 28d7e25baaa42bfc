"""Live catalog and fleet: versions registered at runtime, replicas and their load states.

Revision ID: 0003
Revises: 0002
Create Date: 2024-12-02

``models`` gains the salt, agreement tolerance and source of a model; ``versions`` gains
who manages it, the options as requested, fingerprints, how a moving reference was
pinned, when it was registered and whether replicas keep it loaded. ``replicas`` and
``replica_versions`` are new. As in 0001, everything is spelled out here rather than
taken from ``rollwise.store.schema``.

Every new column of an existing table has a database default: rows already there get
it, and so do inserts from replicas still running the previous rollwise during a
rolling upgrade.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# JSON as TEXT on SQLite: a column declared JSON there has numeric affinity.
Json = sa.JSON().with_variant(sa.Text(), "sqlite")
EMPTY_JSON = sa.text("'{}'")

MODEL_COLUMNS = ("salt", "agreement_tolerance", "source")
VERSION_COLUMNS = (
    "source",
    "requested",
    "spec_sha256",
    "artifact_sha256",
    "resolved",
    "registered_at_s",
    "keep_loaded",
)


def upgrade() -> None:
    # On SQLite, a batch of nothing but added columns is plain ALTER TABLE ADD COLUMN:
    # no table is rebuilt, so no row of a child table is at risk.
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("salt", sa.Text(), nullable=False, server_default=""))
        batch.add_column(
            sa.Column(
                "agreement_tolerance",
                sa.Double(),
                nullable=False,
                server_default=sa.text("0.000001"),
            )
        )
        batch.add_column(sa.Column("source", sa.Text(), nullable=False, server_default="config"))
    with op.batch_alter_table("versions") as batch:
        batch.add_column(sa.Column("source", sa.Text(), nullable=False, server_default="config"))
        batch.add_column(sa.Column("requested", Json, nullable=False, server_default=EMPTY_JSON))
        batch.add_column(sa.Column("spec_sha256", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("artifact_sha256", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("resolved", Json, nullable=False, server_default=EMPTY_JSON))
        batch.add_column(
            sa.Column("registered_at_s", sa.Double(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(
            sa.Column("keep_loaded", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    # Every version so far came from a config, which asks for exactly what it loads.
    # spec_sha256 stays empty: the next config sync fingerprints these versions.
    op.execute("UPDATE versions SET requested = options, registered_at_s = updated_at_s")

    op.create_table(
        "replicas",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at_s", sa.Double(), nullable=False),
        sa.Column("last_seen_s", sa.Double(), nullable=False),
        sa.Column("rollwise_version", sa.Text(), nullable=False),
        sa.Column("stopped", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("id", name="pk_replicas"),
    )
    op.create_index("ix_replicas_last_seen_s", "replicas", ["last_seen_s"])
    op.create_table(
        "replica_versions",
        sa.Column("replica", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("health", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("artifact_sha256", sa.Text(), nullable=False),
        sa.Column("updated_at_s", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("replica", "model", "version", name="pk_replica_versions"),
        sa.ForeignKeyConstraint(
            ["replica"],
            ["replicas.id"],
            name="fk_replica_versions_replica_replicas",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("replica_versions")
    op.drop_index("ix_replicas_last_seen_s", table_name="replicas")
    op.drop_table("replicas")
    # On SQLite this rebuilds both tables; run it with foreign keys off (as migrate()
    # and the alembic command line do), or the rebuild cascades into their children.
    with op.batch_alter_table("versions") as batch:
        for column in VERSION_COLUMNS:
            batch.drop_column(column)
    with op.batch_alter_table("models") as batch:
        for column in MODEL_COLUMNS:
            batch.drop_column(column)
