"""What one replica measured: in-memory windows and answers, flushed to the store every
interval, joined with ground truth (feedback), pruned, and read back merged across the
fleet.

A label counts toward the time its prediction was made (see ``late_labels``), so that
"the data since the current weights took effect" holds the labels of the answers given
under them and of no earlier ones, whenever those labels arrive."""

from __future__ import annotations

import asyncio
import contextlib
import math
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

from rollwise.backends.base import Backend
from rollwise.domain import Role
from rollwise.errors import Conflict, NotFound, ValidationError
from rollwise.metrics.recorder import (
    MetricKey,
    MetricsRecorder,
    VersionWindow,
    merge_by_version,
    merge_windows,
    windows_by_version,
)
from rollwise.metrics.satisfaction import NO_LABEL, NO_SCORE, stored_label
from rollwise.metrics.scoring import ClassKey, Score, check_labels, class_keys, labels_for, score
from rollwise.metrics.series import Grid, Series, add_window, bucket_payloads, build_series
from rollwise.runtime.context import Context
from rollwise.runtime.late_labels import FeedbackSums, LateLabels
from rollwise.runtime.predictions import LoggedAnswer, PredictionLog, RecordsOf
from rollwise.store.base import FeedbackRecord, MetricBucketRow, Store

MAX_METRICS_WINDOW_S = 7 * 86400
"""The longest window metrics are read over: the reading costs time and memory in
proportion to the buckets in it (one per second, version, role and replica)."""


class Telemetry:
    """Metrics and predictions of one replica, and their way to the store."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.metrics = MetricsRecorder()
        self.late = LateLabels()
        self.predictions = PredictionLog(ctx.config.server.prediction_cache_size)
        self._flush_lock = asyncio.Lock()
        self._window_start_s = ctx.clock()
        self.fallbacks: dict[tuple[str, str], int] = {}
        """Requests routing meant for a version not ready in this replica, by (model,
        version), since start (a Prometheus counter)."""

    def start_window(self) -> None:
        self._window_start_s = self.ctx.clock()

    # feedback -------------------------------------------------------------------------
    async def feedback(
        self,
        model_name: str,
        request_id: str,
        label: Any,
        classes: Collection[ClassKey] | None = None,
        satisfaction: float | None = None,
    ) -> dict[str, Any]:
        """Join a label to the answers given to ``request_id`` and score them.

        ``label`` is ``NO_LABEL`` when the caller sent only a ``satisfaction`` (a rating
        in [0, 1], see ``rollwise.metrics.satisfaction``), which is counted for the
        answer the caller saw (not a shadow's), whatever its outputs.

        ``classes`` (see ``ModelClasses``) are what a classification label may be; the
        label is refused (``ValidationError``) before anything is stored or counted
        when it cannot be a true answer of the model.
        """
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
        has_label = label is not NO_LABEL
        if has_label and not served.outputs:
            # A rest version without output_path, or an answer its output_path did not
            # fit: there is no prediction to hold the label against.
            raise ValidationError(
                f"request {request_id!r} of model {model_name!r} has no prediction rollwise "
                f"could read (version {served.version}: a rest version needs output_path "
                "for its answers to be scored); the label was not stored"
            )
        # Score first: a label that cannot be scored is refused before it is stored, so
        # the caller can correct it and send it again.
        scores: dict[tuple[str, Role], tuple[Score, float]] = {}
        if has_label:
            labels = labels_for(label, len(served.outputs))
            check_labels(labels, model.task, classes)
        for record in records:
            key = (record.version, record.role)
            if key not in scores:
                figures = score(record.outputs, labels, model.task) if has_label else NO_SCORE
                scores[key] = (figures, record.at_s)
        stored = await ctx.db(
            ctx.store.record_feedback,
            FeedbackRecord(request_id, model_name, stored_label(label, satisfaction), ctx.clock()),
        )
        if not stored:
            raise Conflict(f"request {request_id!r} already has feedback")
        result: dict[str, Any] = {"request_id": request_id, "model": model_name, "versions": {}}
        for (version, role), (figures, predicted_at_s) in scores.items():
            sums = FeedbackSums.of(figures)
            # The user saw the answer that was returned, never a shadow's: a rating is
            # the served (or previewed) version's alone.
            rated = satisfaction is not None and role is not Role.SHADOW
            if not has_label and not rated:
                continue
            if rated and satisfaction is not None:
                sums.satisfaction = 1
                sums.satisfaction_sum = satisfaction
                sums.satisfaction_sq_sum = satisfaction * satisfaction
            self._count_label(model_name, version, role, sums, predicted_at_s)
            shown: dict[str, Any] = {}
            if has_label:
                shown = {
                    "correct": figures.correct,
                    "count": figures.count,
                    "abs_error": figures.abs_error,
                }
            if rated:
                shown["satisfaction"] = satisfaction
            result["versions"][f"{version}/{role.value}"] = shown
        return result

    def _count_label(
        self, model: str, version: str, role: Role, sums: FeedbackSums, predicted_at_s: float
    ) -> None:
        """Count a label toward the window of its prediction: the current one, or the
        late bucket of the second it was made in."""
        if predicted_at_s < self._window_start_s:
            key = (model, version, role, math.floor(predicted_at_s))
            if self.late.add(key, sums):
                return
        sums.add_to(self.metrics.window(model, version, role))

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
        late = self.late.take()
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
        # Late labels start with this window too, when they arrived, so that a reader
        # that goes on from the last bucket it read finds them.
        rows += [
            MetricBucketRow(
                model,
                version,
                role,
                start_s,
                width_s,
                ctx.replica,
                sums.window().to_payload(),
                second,
            )
            for (model, version, role, second), sums in late.items()
        ]
        if rows:
            try:
                await ctx.db(ctx.store.write_metric_buckets, rows)
            except Exception:
                # All kept for the next flush, so a store outage delays figures and
                # logged predictions, not loses them (predictions up to their bound).
                self.metrics.unwritten(windows)
                self.late.give_back(late)
                self.predictions.give_back(predictions)
                raise
            self.late.written()
        if predictions:
            try:
                await ctx.db(log_answers, ctx.store, predictions)
            except Exception:
                self.predictions.give_back(predictions)
                raise
            self.predictions.written()

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
        across all replicas (from the store) plus this replica's unflushed window.

        ``window_s`` is at most ``MAX_METRICS_WINDOW_S`` (``ValidationError`` beyond).
        """
        if not 0 < window_s <= MAX_METRICS_WINDOW_S:
            raise ValidationError(
                f"a metrics window of {window_s:g} s is not within 1..{MAX_METRICS_WINDOW_S} s "
                f"({MAX_METRICS_WINDOW_S // 86400:g} days at most)"
            )
        ctx = self.ctx
        since = ctx.clock() - window_s
        async with self._flush_lock:
            # Read and merged in the store's thread: a long window is hundreds of
            # thousands of buckets, and merging them on the event loop stalled every
            # request for seconds.
            stored = await ctx.db(read_merged_buckets, ctx.store, model, since)
            pending = self.metrics.pending(model)
            late = self.late.pending(model, since)
        return merge_by_version([stored, late, *({key: window} for key, window in pending)])

    async def version_series(
        self, model: str, grid: Grid, *, stable: str, task: str, order: Sequence[str] = ()
    ) -> Series:
        """Every version's figures of ``model`` per step of ``grid`` (see
        :mod:`rollwise.metrics.series`), across all replicas plus this replica's
        unflushed window, which counts toward the step its window started in.

        Late labels not flushed yet are left out: their seconds are merged away in
        memory, and the next flush (within ``flush_interval_s``) puts them in their step.
        """
        ctx = self.ctx
        async with self._flush_lock:
            start_s = math.floor(self._window_start_s)
            pending = [(key, start_s, window) for key, window in self.metrics.pending(model)]
            # Read, merged and turned into figures in the store's thread, as
            # version_metrics does: a long window is many buckets.
            return await ctx.db(
                partial(read_series, ctx.store, model, grid, pending, stable, task, order)
            )

    def totals(self) -> Iterator[tuple[MetricKey, VersionWindow]]:
        """This replica's running totals since start (``/metrics``), late labels included."""
        merged = dict(self.metrics.totals())
        for key, window in self.late.totals().items():
            merged[key] = merge_windows([merged[key], window]) if key in merged else window
        for key in sorted(merged):
            yield key, merged[key]


def log_answers(store: Store, batch: list[LoggedAnswer]) -> None:
    """Write a batch of logged answers in one transaction; runs in the store's thread,
    where each answer becomes the store's record only as it is written."""
    store.log_predictions(RecordsOf(batch))


def read_series(
    store: Store,
    model: str,
    grid: Grid,
    pending: Iterable[tuple[tuple[str, Role], float, VersionWindow]],
    stable: str,
    task: str,
    order: Sequence[str],
) -> Series:
    """The stored buckets of ``model`` in ``grid``'s steps plus ``pending`` windows (key,
    measured_s, window), as figures; runs in a worker thread (``Context.db``)."""
    rows = store.read_metric_buckets(model, grid.first_s)
    steps = bucket_payloads(grid, ((r.version, r.role, r.measured_s, r.payload) for r in rows))
    for key, measured_s, window in pending:
        add_window(steps, grid, key, measured_s, window)
    return build_series(grid, steps, stable=stable, task=task, order=order)


def read_merged_buckets(
    store: Store, model: str, since_s: float
) -> dict[tuple[str, Role], VersionWindow]:
    """The stored buckets of ``model`` since ``since_s``, merged by (version, role);
    late labels only when their predictions were made since ``since_s`` too.

    Runs in a worker thread (``Context.db``), reading and merging there, so that only
    the few merged windows come back to the event loop.
    """
    rows = store.read_metric_buckets(model, since_s)
    return windows_by_version(
        (row.version, row.role, row.payload) for row in rows if row.measured_s >= since_s
    )


class ModelClasses:
    """The classes a model's labels are checked against, from the model where it can.

    A loaded version that knows its classes (scikit-learn's ``classes_``, which the
    backend's metadata reports as ``extra["classes"]``) decides; versions that know
    them are joined, so a candidate that adds a class accepts its labels too. Else the
    model's ``labels:`` list from the config; else None (any integer or short string).
    Each version's classes are read once per loaded backend, not per label.
    """

    def __init__(
        self,
        backends: Callable[[], Mapping[tuple[str, str], Backend]],
        configured: Callable[[], Mapping[str, Collection[Any]]],
    ) -> None:
        self._backends = backends
        # Read through a callable, so that a config the gateway replaces is followed.
        self._configured = configured
        self._configured_keys: dict[str, tuple[Collection[Any], frozenset[ClassKey]]] = {}
        # A weak reference, so that a retired backend is not kept alive by this cache.
        self._seen: dict[tuple[str, str], tuple[weakref.ref[Backend], frozenset[ClassKey]]] = {}

    def of(self, model: str) -> frozenset[ClassKey] | None:
        known: set[ClassKey] = set()
        for key, backend in list(self._backends().items()):
            if key[0] == model:
                known |= self._version_classes(key, backend)
        if known:
            return frozenset(known)
        listed = self._configured().get(model)
        if listed is None:
            return None
        cached = self._configured_keys.get(model)
        if cached is None or cached[0] is not listed:
            cached = (listed, class_keys(listed))
            self._configured_keys[model] = cached
        return cached[1]

    def _version_classes(self, key: tuple[str, str], backend: Backend) -> frozenset[ClassKey]:
        seen = self._seen.get(key)
        if seen is not None and seen[0]() is backend:
            return seen[1]
        if not backend.ready():
            return frozenset()  # asked again once it is loaded
        try:
            classes = backend.metadata().extra.get("classes")
        except Exception:  # a backend that cannot describe itself knows no classes
            classes = None
        keys = class_keys(classes) if isinstance(classes, list | tuple) else frozenset()
        # A backend type without weak references is simply not cached.
        with contextlib.suppress(TypeError):
            self._seen[key] = (weakref.ref(backend), keys)
        return keys
