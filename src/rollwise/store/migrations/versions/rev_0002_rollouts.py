"""Rollouts and leases: the rollout controller's state and its leader lease.

Revision ID: 0002
Revises: 0001
Create Date: 2024-11-28

As in 0001, the tables are spelled out here rather than taken from
``rollwise.store.schema``, so this revision creates the same tables forever.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# JSON as TEXT on SQLite: a column declared JSON there has numeric affinity.
Json = sa.JSON().with_variant(sa.Text(), "sqlite")
# SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("phase", sa.Text(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("spec", Json, nullable=False),
        sa.Column("status", Json, nullable=False),
        sa.Column("created_at_s", sa.Double(), nullable=False),
        sa.Column("updated_at_s", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rollouts"),
        sa.ForeignKeyConstraint(
            ["model"], ["models.name"], name="fk_rollouts_model_models", ondelete="CASCADE"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_rollouts_model_id", "rollouts", ["model", "id"])
    op.create_index("ix_rollouts_phase", "rollouts", ["phase"])
    op.create_table(
        "leases",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_s", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_table("rollouts")
