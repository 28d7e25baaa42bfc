"""The gateway's runtime: loaded versions, live routing tables, metrics and their flushing.

Everything the data plane and the control API share lives here. The request path only
reads ``tables`` (replaced whole, never mutated) and adds to in-memory metrics; every
store access runs in a small thread pool of its own, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from rollwise.backends.base import Backend, InferenceRequest, InferenceResponse
from rollwise.config import GatewayConfig
from rollwise.controller import Controller, Rollouts, load
from rollwise.domain import BUCKETS, Event, ModelSpec, Role, Routing, VersionHealth, VersionSpec
from rollwise.errors import (
    BackendError,
    BackendLoadError,
    BackendTimeout,
    BackendUnavailable,
    Conflict,
    NotFound,
    RollwiseError,
    ValidationError,
)
from rollwise.metrics.recorder import (
    MetricsRecorder,
    VersionWindow,
    merge_by_version,
    windows_by_version,
)
from rollwise.metrics.scoring import Score, compare_outputs, labels_for, score
from rollwise.rollout import Command, CommandKind, Phase
from rollwise.routing import ModelTable, build_table, check_routing, known_version
from rollwise.server.predictions import PredictionLog
from rollwise.store.base import FeedbackRecord, MetricBucketRow, PredictionRecord, Store

log = logging.getLogger("rollwise.gateway")
USERS_TRACKED = 1_000_000
"""Distinct sticky users remembered per model under one routing (about 100 MB at most);
beyond it new users go uncounted, alike for every version."""
RELOAD_GRACE_S = 30.0
"""How long a replaced backend stays open for the requests still running on it."""
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class VersionState:
    health: VersionHealth
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the served version answered, for the reply and for the mirrors."""

    version: str
    response: InferenceResponse


class Gateway:
    """Runtime state of one gateway replica."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        replica: str | None = None,
        backend_factory: Callable[..., Backend] | None = None,
    ) -> None:
        self.config = config
        self.models: Mapping[str, ModelSpec] = config.models
        self.clock = clock
        self.rng = rng or random.Random()
        self.replica = replica or f"{socket.gethostname()}-{os.getpid()}"
        self.metrics = MetricsRecorder()
        self.tables: Mapping[str, ModelTable] = {}
        self.routings: dict[str, Routing] = {}
        self.backends: dict[tuple[str, str], Backend] = {}
        self.states: dict[tuple[str, str], VersionState] = {}
        self._store = store
        self._backend_factory = backend_factory
        self._db_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="rollwise-store")
        self._tasks: list[asyncio.Task[None]] = []
        self._mirror_tasks: set[asyncio.Task[None]] = set()
        self._mirrors_running: dict[tuple[str, str], int] = {}
        self._flush_lock = asyncio.Lock()
        self._refresh_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._reloading: set[tuple[str, str]] = set()
        self._retired: list[Backend] = []
        self._mirror_limit = config.server.mirror_concurrency
        self.predictions = PredictionLog(config.server.prediction_cache_size)
        self._state_version = -1
        self._window_start_s = clock()
        self.started = False
        self._rollouts: Rollouts | None = None
        self._users_seen: dict[str, set[str]] = {}
        self.controller: Controller | None = None
        self._controller_job: asyncio.Future[None] | None = None

    # lifecycle ------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        if self._store is None:
            raise RollwiseError("the gateway has not been started")
        return self._store

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db_pool, fn, *args)

    async def start(self) -> None:
        if self._store is None:
            from rollwise.store import open_store

            self._store = await self.db(open_store, self.config.store_url)
        await self.db(self.store.migrate)
        events = await self.db(self.store.sync_models, list(self.models.values()), self.clock())
        for event in events:
            log.info("%s: %s", event.model, event.message)
        await self._load_all()
        await self.refresh_routing(force=True)
        self._window_start_s = self.clock()
        server = self.config.server
        self._tasks = [
            asyncio.create_task(self._every(server.flush_interval_s, self.flush), name="flush"),
            asyncio.create_task(
                self._every(server.routing_poll_interval_s, self.refresh_routing), name="routing"
            ),
            asyncio.create_task(self._every(60.0, self.prune), name="prune"),
        ]
        self._rollouts = Rollouts(
            self.store,
            clock=self.clock,
            readiness=self.readiness,
            versions=lambda name: list(self.model(name).versions),
            split_by_user=lambda name: self.model(name).sticky_key is not None,
        )
        if self.config.controller.enabled:
            self._start_controller()
        self.started = True

    def _start_controller(self) -> None:
        settings = self.config.controller
        loop = asyncio.get_running_loop()

        def routing_changed() -> None:
            # The controller wrote new routing: this replica applies it now rather
            # than at its next poll.
            asyncio.run_coroutine_threadsafe(self.refresh_routing(), loop)

        self.controller = Controller(
            self.store,
            clock=self.clock,
            interval_s=settings.interval_s,
            lease_ttl_s=settings.lease_ttl_s,
            settle_s=self.config.settle_s,
            # Unique even where containers share a hostname and a pid: two holders of
            # one name would both renew one lease, and fencing could not tell them apart.
            holder=f"{self.replica}-{secrets.token_hex(4)}",
            readiness=self.readiness,
            on_routing=routing_changed,
        )
        # Its own thread: a tick reads and judges metrics, which must not hold up
        # the event loop that serves requests.
        self._controller_job = loop.run_in_executor(None, self.controller.run)

    @property
    def rollouts(self) -> Rollouts:
        if self._rollouts is None:
            raise RollwiseError("the gateway has not been started")
        return self._rollouts

    def readiness(self, model: str, version: str) -> tuple[bool, str]:
        """Whether ``version`` of ``model`` is loaded here, and if not, why."""
        state = self.states.get((model, version))
        if state is None:
            return False, "not configured in this gateway"
        if state.health is VersionHealth.READY:
            return True, ""
        return False, state.health.value + (f": {state.reason}" if state.reason else "")

    async def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            if self._controller_job is not None:
                with contextlib.suppress(Exception):
                    await self._controller_job
            self.controller = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._mirror_tasks:
            await asyncio.wait(list(self._mirror_tasks), timeout=5)
        for task in list(self._background):
            task.cancel()
        for backend in self._retired:
            with contextlib.suppress(Exception):
                await backend.close()
        self._retired.clear()
        if self._store is not None:
            with contextlib.suppress(Exception):
                await self.flush()
        for backend in self.backends.values():
            with contextlib.suppress(Exception):
                await backend.close()
        if self._store is not None:
            await self.db(self.store.close)
        self._db_pool.shutdown(wait=False)
        self.started = False

    async def _every(self, interval_s: float, job: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await job()
            except Exception:
                log.exception("background job %s failed; retrying next interval", job)

    async def _load_all(self) -> None:
        from rollwise.backends.executor import configure_executor

        if self.config.server.predict_threads > 0:
            configure_executor(self.config.server.predict_threads)
        jobs = []
        for model in self.models.values():
            for version in model.versions.values():
                key = (model.name, version.name)
                self.states[key] = VersionState(VersionHealth.LOADING)
                jobs.append(self._load_one(key, version))
        await asyncio.gather(*jobs)

    async def _build(self, spec: VersionSpec) -> Backend:
        """A loaded backend for ``spec``; nothing is left open when loading fails."""
        if self._backend_factory is None:
            from rollwise.backends.registry import create_backend

            self._backend_factory = create_backend
        backend = self._backend_factory(spec, self.config.base_dir)
        try:
            await backend.load()
        except BaseException:
            with contextlib.suppress(Exception):
                await backend.close()
            raise
        return backend

    async def _load_one(self, key: tuple[str, str], spec: VersionSpec) -> None:
        try:
            self.backends[key] = await self._build(spec)
        except Exception as error:
            reason = str(error) or type(error).__name__
            self.states[key] = VersionState(VersionHealth.FAILED, reason)
            log.warning("model %s version %s failed to load: %s", key[0], key[1], reason)
            return
        self.states[key] = VersionState(VersionHealth.READY)
        log.info("model %s version %s is ready (%s)", key[0], key[1], spec.backend)

    async def reload_version(self, model_name: str, version: str, actor: str) -> VersionState:
        """Load a version anew (after a failed load, or a new file) and swap it in.

        The old backend keeps serving until the new one is ready and is closed only
        after a grace period, so requests in flight finish on it. When loading fails,
        a version that was serving keeps serving on its old backend.
        """
        model = self.model(model_name)
        known_version(model, version)
        spec = model.versions[version]
        key = (model_name, version)
        if key in self._reloading:
            raise Conflict(f"version {version!r} of model {model_name!r} is already reloading")
        self._reloading.add(key)
        try:
            backend = await self._build(spec)
        except Exception as error:
            reason = str(error) or type(error).__name__
            if self.states[key].health is not VersionHealth.READY:
                self.states[key] = VersionState(VersionHealth.FAILED, reason)
            await self._event(model_name, "version.reload_failed", f"{version}: {reason}", actor)
            raise BackendLoadError(
                f"version {version!r} of model {model_name!r} failed to load: {reason}",
                version=version,
            ) from None
        finally:
            self._reloading.discard(key)
        previous = self.backends.get(key)
        self.backends[key] = backend
        self.states[key] = VersionState(VersionHealth.READY)
        self._rebuild_tables()
        await self._event(model_name, "version.reloaded", f"{version} reloaded", actor)
        if previous is not None:
            self._retired.append(previous)
            self._later(self._close_after(previous, RELOAD_GRACE_S))
        return self.states[key]

    async def _close_after(self, backend: Backend, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        self._retired.remove(backend)
        with contextlib.suppress(Exception):
            await backend.close()

    def _later(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _event(self, model: str, kind: str, message: str, actor: str) -> None:
        event = Event(model=model, kind=kind, message=message, at_s=self.clock(), actor=actor)
        await self.db(self.store.add_event, event)

    def ready_versions(self, model: str) -> set[str]:
        return {
            version
            for (m, version), state in self.states.items()
            if m == model and state.health is VersionHealth.READY
        }

    # routing --------------------------------------------------------------------------
    async def refresh_routing(self, force: bool = False) -> None:
        """Rebuild the tables when the stored routing changed (or when forced)."""
        # One refresh at a time (the poll, the controller's nudge and a command's can
        # coincide): a slower, older read must never replace a newer one.
        async with self._refresh_lock:
            state_version = await self.db(self.store.state_version)
            if not force and state_version == self._state_version:
                return
            routings = await self.db(self.store.list_routings)
            self._state_version = state_version
            self.routings = {r.model: r for r in routings if r.model in self.models}
            self._rebuild_tables()

    def _rebuild_tables(self) -> None:
        tables: dict[str, ModelTable] = {}
        for name, model in self.models.items():
            routing = self.routings.get(name) or Routing(
                name, model.stable, {model.stable: 100}, salt=model.effective_salt
            )
            tables[name] = build_table(routing, self.ready_versions(name), model.sticky_key)
        # One assignment: a request sees the old tables or the new ones, never a mix.
        previous, self.tables = self.tables, tables
        # Users are counted anew when a model's routing changes: the sample-ratio check
        # compares the users each version got with its weight since then. Only then:
        # counting a user twice under one routing would overstate the evidence.
        for name, table in tables.items():
            old = previous.get(name)
            if table.sticky_key and (old is None or old.routing != table.routing):
                self._users_seen[name] = set()

    async def set_routing(
        self,
        model_name: str,
        weights: Mapping[str, object],
        mirrors: Mapping[str, object],
        actor: str,
        force: bool = False,
    ) -> Routing:
        model = self.model(model_name)
        current = self.routings.get(model_name)
        routing = check_routing(model, weights, mirrors, current)
        ready = self.ready_versions(model_name)
        not_ready = [v for v in [*routing.weights, *routing.mirrors] if v not in ready]
        if not_ready:
            reasons = "; ".join(
                f"{v}: {self.states[(model_name, v)].health.value}"
                + (
                    f" ({self.states[(model_name, v)].reason})"
                    if self.states[(model_name, v)].reason
                    else ""
                )
                for v in not_ready
            )
            raise Conflict(
                f"model {model_name!r}: cannot route to versions that are not ready: {reasons}"
            )
        if force:
            # Routing set by hand ends the rollout in progress first: left running, it
            # would judge a split it did not make and put its own weights back.
            latest = await self.db(self.store.latest_rollout, model_name)
            if latest is not None and Phase(latest.phase).active:
                abort = Command(CommandKind.ABORT, actor, "routing set by hand")
                await self.db(self.rollouts.command, model_name, abort)
        shown = ", ".join(f"{v}={w}" for v, w in routing.weights.items())
        mirrors_shown = ", ".join(f"{v}={p}" for v, p in routing.mirrors.items())
        message = f"weights {shown}" + (f"; mirror {mirrors_shown}" if mirrors_shown else "")
        event = Event(
            model=model_name,
            kind="routing.changed",
            message=message,
            data={
                "weights": dict(routing.weights),
                "mirrors": dict(routing.mirrors),
                "previous": current.to_dict() if current else None,
            },
            at_s=self.clock(),
            actor=actor,
        )
        await self.db(partial(self.store.set_routing, routing, event, force=force))
        self.routings[model_name] = routing
        self._rebuild_tables()
        return routing

    def model(self, name: str) -> ModelSpec:
        model = self.models.get(name)
        if model is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise NotFound(f"unknown model {name!r} (models: {known})")
        return model

    # the request path -----------------------------------------------------------------
    def choose(self, model: str, key: str | None, forced: str | None) -> tuple[ModelTable, str]:
        table = self.tables.get(model)
        if table is None:
            self.model(model)
            raise BackendUnavailable(f"model {model!r} is not loaded yet")
        if forced is not None:
            known_version(self.models[model], forced)
            state = self.states[(model, forced)]
            if state.health is not VersionHealth.READY:
                raise BackendUnavailable(
                    f"version {forced!r} of model {model!r} is {state.health.value}"
                    + (f": {state.reason}" if state.reason else ""),
                    version=forced,
                )
            return table, forced
        if not table.serving:
            detail = "; ".join(
                f"{v}: {self.states[(model, v)].health.value}" for v in self.models[model].versions
            )
            raise BackendUnavailable(f"model {model!r} has no ready version ({detail})")
        version = table.choose(key, self.rng.randrange(BUCKETS))
        if key is not None:
            seen = self._users_seen.get(model)
            if seen is not None and key not in seen and len(seen) < USERS_TRACKED:
                seen.add(key)
                self.metrics.window(model, version, Role.SERVED).users += 1
        return table, version

    async def serve(
        self,
        table: ModelTable,
        version: str,
        request: InferenceRequest,
        request_id: str,
        role: Role = Role.SERVED,
    ) -> Outcome:
        """Ask ``version`` for an answer, recording what happened under ``role``
        (served traffic, or a preview that forced the version)."""
        model = table.model
        backend = self.backends[(model, version)]
        started = time.perf_counter()
        try:
            response = await backend.predict(request)
        except ValidationError:
            raise
        except BackendTimeout as error:
            self._record_call(model, version, role, started, error)
            raise BackendTimeout(
                f"version {version!r} of model {model!r} did not answer in time: {error}",
                version=version,
            ) from None
        except Exception as error:
            self._record_call(model, version, role, started, error)
            raise BackendError(
                f"version {version!r} of model {model!r} failed: {error}", version=version
            ) from None
        window = self._record_call(model, version, role, started, None)
        self._record_answer(window, model, version, role, request_id, response)
        return Outcome(version, response)

    def _record_call(
        self, model: str, version: str, role: Role, started: float, error: Exception | None
    ) -> VersionWindow:
        latency_ms = (time.perf_counter() - started) * 1000.0
        # Looked up after the call: the window may have been swapped out meanwhile.
        window = self.metrics.window(model, version, role)
        window.record_call(
            latency_ms, failed=error is not None, timed_out=isinstance(error, BackendTimeout)
        )
        return window

    def _record_answer(
        self,
        window: VersionWindow,
        model: str,
        version: str,
        role: Role,
        request_id: str,
        response: InferenceResponse,
    ) -> list[Any]:
        outputs = list(response.primary())
        window.record_outputs(outputs, self.models[model].task == "classification")
        self.predictions.remember(
            PredictionRecord(request_id, model, version, role, outputs, self.clock())
        )
        return outputs

    def mirror(
        self, table: ModelTable, request: InferenceRequest, request_id: str, served: Outcome | None
    ) -> None:
        """Copy the request to the shadow versions due for it, without waiting for them."""
        for version, percent in table.mirrors:
            if percent < 100 and self.rng.random() * 100.0 >= percent:
                continue
            key = (table.model, version)
            running = self._mirrors_running.get(key, 0)
            if running >= self._mirror_limit:
                # Bounded per shadow: a slow shadow sheds its own load here instead of
                # delaying replies or crowding out the other shadows.
                self.metrics.window(table.model, version, Role.SHADOW).dropped += 1
                continue
            self._mirrors_running[key] = running + 1
            task = asyncio.get_running_loop().create_task(
                self._shadow(table.model, version, request, request_id, served)
            )
            self._mirror_tasks.add(task)
            task.add_done_callback(partial(self._mirror_done, key))

    def _mirror_done(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        self._mirror_tasks.discard(task)
        self._mirrors_running[key] -= 1

    async def _shadow(
        self,
        model: str,
        version: str,
        request: InferenceRequest,
        request_id: str,
        served: Outcome | None,
    ) -> None:
        backend = self.backends[(model, version)]
        started = time.perf_counter()
        try:
            response = await backend.predict(request)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._record_call(model, version, Role.SHADOW, started, error)
            return
        window = self._record_call(model, version, Role.SHADOW, started, None)
        outputs = self._record_answer(window, model, version, Role.SHADOW, request_id, response)
        if served is not None:
            compared, agreed = compare_outputs(
                served.response.primary(), outputs, self.models[model].agreement_tolerance
            )
            window.compared += compared
            window.agreed += agreed

    # feedback -------------------------------------------------------------------------
    async def feedback(self, model_name: str, request_id: str, label: Any) -> dict[str, Any]:
        model = self.model(model_name)
        records = self.predictions.recent(request_id)
        if records is None:
            records = await self.db(self.store.get_predictions, request_id)
        records = [r for r in records if r.model == model_name]
        if not records:
            hours = self.config.server.prediction_retention_s / 3600
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
        stored = await self.db(
            self.store.record_feedback, FeedbackRecord(request_id, model_name, label, self.clock())
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
        now = self.clock()
        windows = self.metrics.swap()
        predictions = self.predictions.take_batch()
        start_s = math.floor(self._window_start_s)
        width_s = max(1, round(now - self._window_start_s))
        self._window_start_s = now
        rows = [
            MetricBucketRow(
                model, version, role, start_s, width_s, self.replica, window.to_payload()
            )
            for (model, version, role), window in windows.items()
        ]
        if rows:
            try:
                await self.db(self.store.write_metric_buckets, rows)
            except Exception:
                # Kept for the next flush, so a store outage delays figures, not loses them.
                self.metrics.unwritten(windows)
                raise
        if predictions:
            try:
                await self.db(self.store.log_predictions, predictions)
            except Exception:
                self.predictions.give_back(predictions)
                raise

    async def prune(self) -> None:
        now = self.clock()
        server = self.config.server
        await self.db(self.store.prune_predictions, now - server.prediction_retention_s)
        await self.db(self.store.prune_feedback, now - server.prediction_retention_s)
        await self.db(self.store.prune_metric_buckets, now - server.metrics_retention_s)

    # reading --------------------------------------------------------------------------
    async def version_metrics(
        self, model: str, window_s: float
    ) -> dict[tuple[str, Role], VersionWindow]:
        """Merged metrics of every version of ``model`` over the last ``window_s``,
        across all replicas (from the store) plus this replica's unflushed window."""
        since = self.clock() - window_s
        async with self._flush_lock:
            rows = await self.db(self.store.read_metric_buckets, model, since)
            pending = self.metrics.pending(model)
        stored = windows_by_version((row.version, row.role, row.payload) for row in rows)
        return merge_by_version([stored, *({key: window} for key, window in pending)])

    async def model_status(self, name: str, window_s: float) -> dict[str, Any]:
        model = self.model(name)
        table = self.tables.get(name)
        routing = self.routings.get(name)
        metrics = await self.version_metrics(name, window_s)
        latest = await self.db(self.store.latest_rollout, name)
        effective = table.effective_weights() if table else {}
        versions = []
        for version in model.versions.values():
            state = self.states.get((name, version.name), VersionState(VersionHealth.LOADING))
            versions.append(
                {
                    "name": version.name,
                    "backend": version.backend,
                    "health": state.health.value,
                    "reason": state.reason,
                    "weight": routing.weight_of(version.name) if routing else 0,
                    "effective_weight": effective.get(version.name, 0),
                    "mirror": routing.mirrors.get(version.name, 0) if routing else 0,
                    "served": _summary(metrics.get((version.name, Role.SERVED))),
                    "shadow": _summary(metrics.get((version.name, Role.SHADOW))),
                    "preview": _summary(metrics.get((version.name, Role.PREVIEW))),
                }
            )
        return {
            "name": name,
            "stable": routing.stable if routing else model.stable,
            "task": model.task,
            "sticky_key": str(model.sticky_key) if model.sticky_key else None,
            "serving": bool(table and table.serving),
            "window_s": window_s,
            "versions": versions,
            "rollout": load(latest).summary() if latest is not None else None,
        }


def _summary(window: VersionWindow | None) -> dict[str, Any] | None:
    return window.summary() if window is not None and not window.empty else None
