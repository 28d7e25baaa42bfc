"""Telemetry: metric buckets, predictions and feedback, the data rollouts are judged on.

These are the store's high-volume tables. The gateway writes them in batches every
second from the request path (executemany on SQLite, COPY on PostgreSQL), never under
the state lock, and prunes them in chunks so that a large prune never stalls a flush.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from rollwise.domain import Role
from rollwise.store import schema as t
from rollwise.store.records import FeedbackRecord, MetricBucketRow, PredictionRecord
from rollwise.store.sql_base import SqlBase

PREDICTED_S_KEY = "predicted_s"
"""Where a bucket of late labels keeps the second of their predictions: in its payload,
beside the figures. The largest table needs no new column, and a rollwise of the
previous release (a replica or controller during a rolling upgrade), which reads only
the figures it knows, counts such a bucket by its start, as it always did."""


def _stored_payload(row: MetricBucketRow) -> Mapping[str, Any]:
    if row.predicted_s is None:
        return row.payload
    return {**row.payload, PREDICTED_S_KEY: row.predicted_s}


def _bucket(row: sa.Row[Any]) -> MetricBucketRow:
    payload: Mapping[str, Any] = row.payload
    predicted_s = None
    if PREDICTED_S_KEY in payload:
        figures = dict(payload)
        predicted_s = int(figures.pop(PREDICTED_S_KEY))
        payload = figures
    return MetricBucketRow(
        model=row.model,
        version=row.version,
        role=Role(row.role),
        start_s=int(row.start_s),
        width_s=int(row.width_s),
        replica=row.replica,
        payload=payload,
        predicted_s=predicted_s,
    )


class Telemetry(SqlBase):
    """``MetricsStore`` and ``PredictionStore`` on SQL."""

    # metrics ------------------------------------------------------------------------
    def write_metric_buckets(self, rows: Sequence[MetricBucketRow]) -> None:
        if not rows:
            return
        columns = ("model", "version", "role", "start_s", "width_s", "replica", "payload")
        values = (
            (
                r.model,
                r.version,
                Role(r.role).value,
                r.start_s,
                r.width_s,
                r.replica,
                _stored_payload(r),
            )
            for r in rows
        )
        # No unique key: two rows of the same (model, version, role, start_s, replica),
        # such as a window and the late labels flushed with it, are both kept and summed
        # by every reader.
        self._insert_many(f"writing {len(rows)} metric buckets", t.metric_buckets, columns, values)

    def read_metric_buckets(
        self,
        model: str,
        since_s: float,
        until_s: float | None = None,
        version: str | None = None,
        role: Role | None = None,
    ) -> list[MetricBucketRow]:
        """Rows with since_s <= start_s < until_s, oldest first.

        A bucket of late labels starts when they arrived, so a reader that goes
        on from where it stopped never misses one; whoever judges data since a time
        also drops those whose ``measured_s`` is earlier.
        """
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
        return [_bucket(r) for r in rows]

    def prune_metric_buckets(self, older_than_s: float) -> int:
        return self._prune(
            t.metric_buckets, t.metric_buckets.c.start_s < older_than_s, "metric buckets"
        )

    # predictions and feedback -------------------------------------------------------
    def log_predictions(self, records: Collection[PredictionRecord]) -> None:
        """Log answers; ``records`` is read once, as the rows are written, so a batch
        can make each record only when it is written (see ``runtime.telemetry``)."""
        if not records:
            return
        columns = ("request_id", "model", "version", "role", "outputs", "at_s")
        # A StrEnum's str() is its value as a plain string, made in C: per row, where
        # Role(...).value would run Python code.
        values = (
            (r.request_id, r.model, r.version, str(r.role), r.outputs, r.at_s) for r in records
        )
        self._insert_many(f"logging {len(records)} predictions", t.predictions, columns, values)

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
