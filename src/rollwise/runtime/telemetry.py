"""What one replica measured: in-memory windows and answers, flushed to the store every
interval, joined with ground truth (feedback), pruned, and read back merged across the
fleet."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from rollwise.domain import Role
from rollwise.errors import Conflict, NotFound
from rollwise.metrics.recorder import (
    MetricsRecorder,
    VersionWindow,
    merge_by_version,
    windows_by_version,
)
from rollwise.metrics.scoring import Score, labels_for, score
from rollwise.runtime.context import Context
from rollwise.runtime.predictions import PredictionLog
from rollwise.store.base import FeedbackRecord, MetricBucketRow


class Telemetry:
    """Metrics and predictions of one replica, and their way to the store."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.metrics = MetricsRecorder()
        self.predictions = PredictionLog(ctx.config.server.prediction_cache_size)
        self._flush_lock = asyncio.Lock()
        self._window_start_s = ctx.clock()
        self.fallbacks: dict[tuple[str, str], int] = {}
        """Requests routing meant for a version not ready in this replica, by (model,
        version), since start (a Prometheus counter)."""

    def start_window(self) -> None:
        self._window_start_s = self.ctx.clock()

    # feedback -------------------------------------------------------------------------
    async def feedback(self, model_name: str, request_id: str, label: Any) -> dict[str, Any]:
        ctx = self.ctx
        model = ctx.model(model_name)
        records = self.predictions.recent(request_id)
        if records is None:
            records = await ctx.db(ctx.store.get_predictions, request_id)
        records = [r for r in records if r.model == model_name]
        if not records:
            hours = ctx.config.server.prediction_retention_s / 3600
            raise NotFound(
                f"unknown or expired request id {request_id!r} for model {model_name!r} "
                f"(predictions are kept {hours:g} h)"
            )
        served = next((r for r in records if r.role is Role.SERVED), records[0])
        labels = labels_for(label, len(served.outputs))
        # Score first: a label that cannot be scored is refused before it is stored, so
        # the caller can correct it and send it again.
        scores: dict[tuple[str, Role], Score] = {}
        for record in records:
            key = (record.version, record.role)
            if key not in scores:
                scores[key] = score(record.outputs, labels, model.task)
        stored = await ctx.db(
            ctx.store.record_feedback, FeedbackRecord(request_id, model_name, label, ctx.clock())
        )
        if not stored:
            raise Conflict(f"request {request_id!r} already has feedback")
        result: dict[str, Any] = {"request_id": request_id, "model": model_name, "versions": {}}
        for (version, role), figures in scores.items():
            window = self.metrics.window(model_name, version, role)
            window.feedback += figures.count
            window.correct += figures.correct
            window.abs_error_sum += figures.abs_error
            window.sq_error_sum += figures.sq_error
            window.quartic_error_sum += figures.quartic_error
            result["versions"][f"{version}/{role.value}"] = {
                "correct": figures.correct,
                "count": figures.count,
                "abs_error": figures.abs_error,
            }
        return result

    # persistence ----------------------------------------------------------------------
    async def flush(self) -> None:
        """Write the current metrics window and the logged predictions to the store."""
        # Readers of metrics wait for a flush in progress: between the swap and the
        # commit, a window is neither in memory nor in the store.
        async with self._flush_lock:
            await self._flush()

    async def _flush(self) -> None:
        ctx = self.ctx
        now = ctx.clock()
        windows = self.metrics.swap()
        predictions = self.predictions.take_batch()
        start_s = math.floor(self._window_start_s)
        width_s = max(1, round(now - self._window_start_s))
        self._window_start_s = now
        rows = [
            MetricBucketRow(
                model, version, role, start_s, width_s, ctx.replica, window.to_payload()
            )
            for (model, version, role), window in windows.items()
        ]
        if rows:
            try:
                await ctx.db(ctx.store.write_metric_buckets, rows)
            except Exception:
                # Kept for the next flush, so a store outage delays figures, not loses them.
                self.metrics.unwritten(windows)
                raise
        if predictions:
            try:
                await ctx.db(ctx.store.log_predictions, predictions)
            except Exception:
                self.predictions.give_back(predictions)
                raise

    async def prune(self) -> None:
        ctx = self.ctx
        now = ctx.clock()
        server = ctx.config.server
        await ctx.db(ctx.store.prune_predictions, now - server.prediction_retention_s)
        await ctx.db(ctx.store.prune_feedback, now - server.prediction_retention_s)
        await ctx.db(ctx.store.prune_metric_buckets, now - server.metrics_retention_s)

    # reading --------------------------------------------------------------------------
    async def version_metrics(
        self, model: str, window_s: float
    ) -> dict[tuple[str, Role], VersionWindow]:
        """Merged metrics of every version of ``model`` over the last ``window_s``,
        across all replicas (from the store) plus this replica's unflushed window."""
        ctx = self.ctx
        since = ctx.clock() - window_s
        async with self._flush_lock:
            rows = await ctx.db(ctx.store.read_metric_buckets, model, since)
            pending = self.metrics.pending(model)
        stored = windows_by_version((row.version, row.role, row.payload) for row in rows)
        return merge_by_version([stored, *({key: window} for key, window in pending)])
