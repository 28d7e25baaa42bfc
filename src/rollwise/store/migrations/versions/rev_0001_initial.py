"""Initial schema: models, versions, routing, state counter, events, metrics, predictions.

Revision ID: 0001
Revises:
Create Date: 2024-11-27

The tables are spelled out here rather than taken from ``rollwise.store.schema``: a
revision is a snapshot, and must create the same tables after the schema module moves on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# JSON as TEXT on SQLite: a column declared JSON there has numeric affinity.
Json = sa.JSON().with_variant(sa.Text(), "sqlite")
# SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("stable", sa.Text(), nullable=False),
        sa.Column("sticky_key", sa.Text(), nullable=True),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("created_at_s", sa.Double(), nullable=False),
        sa.Column("updated_at_s", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_models"),
    )
    op.create_table(
        "versions",
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("backend", sa.Text(), nullable=False),
        sa.Column("options", Json, nullable=False),
        sa.Column("updated_at_s", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("model", "name", name="pk_versions"),
        sa.ForeignKeyConstraint(
            ["model"], ["models.name"], name="fk_versions_model_models", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "routing",
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("stable", sa.Text(), nullable=False),
        sa.Column("weights", Json, nullable=False),
        sa.Column("mirrors", Json, nullable=False),
        sa.Column("salt", sa.Text(), nullable=False),
        sa.Column("updated_at_s", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("model", name="pk_routing"),
        sa.ForeignKeyConstraint(
            ["model"], ["models.name"], name="fk_routing_model_models", ondelete="CASCADE"
        ),
    )
    state_counter = op.create_table(
        "state_counter",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_state_counter"),
        sa.CheckConstraint("id = 1", name="ck_state_counter_single_row"),
    )
    op.bulk_insert(state_counter, [{"id": 1, "version": 0}])
    op.create_table(
        "events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", Json, nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("at_s", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_model_id", "events", ["model", "id"])
    op.create_table(
        "metric_buckets",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("start_s", sa.BigInteger(), nullable=False),
        sa.Column("width_s", sa.Integer(), nullable=False),
        sa.Column("replica", sa.Text(), nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_metric_buckets"),
    )
    op.create_index("ix_metric_buckets_model_start_s", "metric_buckets", ["model", "start_s"])
    op.create_index("ix_metric_buckets_start_s", "metric_buckets", ["start_s"])
    op.create_table(
        "predictions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("outputs", Json, nullable=False),
        sa.Column("at_s", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_predictions"),
    )
    op.create_index("ix_predictions_request_id", "predictions", ["request_id"])
    op.create_index("ix_predictions_at_s", "predictions", ["at_s"])
    op.create_table(
        "feedback",
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("label", Json, nullable=False),
        sa.Column("at_s", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_feedback"),
    )
    op.create_index("ix_feedback_model_at_s", "feedback", ["model", "at_s"])


def downgrade() -> None:
    for table in (
        "feedback",
        "predictions",
        "metric_buckets",
        "events",
        "state_counter",
        "routing",
        "versions",
        "models",
    ):
        op.drop_table(table)
