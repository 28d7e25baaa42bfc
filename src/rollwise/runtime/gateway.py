"""One gateway process: the runtime parts put together, and their life from start to stop.

The parts each do one job (``versions`` loads, ``routing`` compiles tables, ``serving``
answers, ``telemetry`` measures, ``membership`` reports to the fleet); this class wires
them, starts their background loops, and runs the rollout controller beside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import secrets
import signal
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from rollwise.backends.base import Backend
from rollwise.backends.options import unreadable_predictions
from rollwise.config import GatewayConfig
from rollwise.controller import Controller
from rollwise.domain import ModelSpec, RegisteredVersion, Routing, VersionSpec
from rollwise.errors import RollwiseError
from rollwise.notifications.sender import Notifier
from rollwise.providers.reader import GateReader
from rollwise.readiness import StoreReadiness
from rollwise.rollout import Phase, RolloutStatus
from rollwise.rollouts import Rollouts
from rollwise.routing import ModelTable
from rollwise.runtime.catalog import desired_versions, merge_catalog
from rollwise.runtime.context import Context
from rollwise.runtime.membership import Membership
from rollwise.runtime.registry import Registered, Registry
from rollwise.runtime.routing_state import RoutingState
from rollwise.runtime.serving import Serving
from rollwise.runtime.telemetry import Telemetry
from rollwise.runtime.versions import Versions, VersionState
from rollwise.store.base import Store

log = logging.getLogger("rollwise.gateway")


class Gateway:
    """Runtime of one gateway replica."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        replica: str | None = None,
        backend_factory: Callable[..., Backend] | None = None,
        on_hangup: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        # What SIGHUP and POST /api/v1/config/reload do instead of reloading here: a
        # worker of ``serve --workers`` is one of several processes that must serve one
        # config, so it asks its supervisor to restart them all with it read again.
        self.on_hangup = on_hangup
        self.clock = clock
        self.replica = replica or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self.ctx = Context(
            config, store=store, clock=clock, rng=rng or random.Random(), replica=self.replica
        )
        if config.tracing.enabled:
            # Imported only here: without tracing, OpenTelemetry is never loaded.
            from rollwise.tracing.otel import build_tracer

            self.ctx.tracer = build_tracer(config.tracing)
        self.fleet = StoreReadiness(
            lambda: self.ctx.store,
            clock=clock,
            heartbeat_timeout_s=config.server.heartbeat_timeout_s,
        )
        self.versions = Versions(
            self.ctx,
            backend_factory=backend_factory,
            on_change=self._versions_changed,
            stable_of=self.stable_of,
        )
        self.routing = RoutingState(self.ctx, self.versions)
        self.routing.on_stored_change = self.refresh_catalog
        self.telemetry = Telemetry(self.ctx)
        self.serving = Serving(self.ctx, self.versions, self.routing, self.telemetry)
        self.membership = Membership(self.ctx, self.versions)
        self.registry = Registry(self.ctx, self.fleet)
        self.started = False
        # Whether this replica may have sent a heartbeat: a stop then says goodbye to
        # the fleet, also when the start was cut short.
        self._joined = False
        # Set the moment a stop begins (SIGTERM): readiness fails from then on.
        self.stopping = False
        self._stop_began_s = 0.0
        self.controller: Controller | None = None
        self._controller_job: asyncio.Future[None] | None = None
        self._rollouts: Rollouts | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Rollout events this process records, sent to the config's targets from
        # queues of their own (started with the gateway).
        self.notifier = Notifier(config.notifications)

    # views the server reads -----------------------------------------------------------
    @property
    def store(self) -> Store:
        return self.ctx.store

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        return self.ctx.models

    @property
    def tables(self) -> Mapping[str, ModelTable]:
        return self.routing.tables

    @property
    def routings(self) -> Mapping[str, Routing]:
        return self.routing.routings

    @property
    def states(self) -> Mapping[tuple[str, str], VersionState]:
        return self.versions.states

    @property
    def backends(self) -> Mapping[tuple[str, str], Backend]:
        return self.versions.backends

    @property
    def rollouts(self) -> Rollouts:
        if self._rollouts is None:
            raise RollwiseError("the gateway has not been started")
        return self._rollouts

    def model(self, name: str) -> ModelSpec:
        return self.ctx.model(name)

    def stable_of(self, name: str) -> str | None:
        """The model's stable version: its stored routing's, else its spec's; None for a
        model this replica does not know."""
        routing = self.routing.routings.get(name)
        if routing is not None:
            return routing.stable
        model = self.ctx.models.get(name)
        return model.stable if model is not None else None

    def unreadable_predictions(self, model: str, version: str) -> str:
        """Why this gateway cannot read the predictions of ``version``; "" when it can
        (or does not know the version: the rollout's own checks say so)."""
        spec = self.ctx.models.get(model)
        found = spec.versions.get(version) if spec is not None else None
        if found is None:
            return ""
        return unreadable_predictions(found.backend, found.options, version)

    async def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.ctx.db(fn, *args)

    # lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        ctx = self.ctx
        if not ctx.has_store:
            from rollwise.store import open_store

            ctx.open_store(await ctx.db(open_store, self.config.store_url))
        store = ctx.store
        await ctx.db(store.migrate)
        events = await ctx.db(store.sync_models, list(self.config.models.values()), self.clock())
        for event in events:
            log.info("%s: %s", event.model, event.message)
        if self.config.server.predict_threads > 0:
            from rollwise.backends.executor import configure_executor

            configure_executor(self.config.server.predict_threads)
        desired = await self._read_catalog()
        self._joined = True
        await self.membership.beat()
        await self.versions.load_all(desired)
        await self.routing.refresh(force=True)
        await self.membership.report(force=True)
        self.telemetry.start_window()
        server = self.config.server
        self._tasks = [
            asyncio.create_task(
                self._every(server.flush_interval_s, self.telemetry.flush), name="flush"
            ),
            asyncio.create_task(
                self._every(server.routing_poll_interval_s, self.routing.refresh), name="routing"
            ),
            asyncio.create_task(
                self._every(server.heartbeat_interval_s, self.membership.beat), name="heartbeat"
            ),
            asyncio.create_task(self._every(60.0, self.prune), name="prune"),
        ]
        self.notifier.start()
        self._rollouts = Rollouts(
            store,
            notify=self.notifier.publish,
            providers=self.config.providers,
            clock=self.clock,
            readiness=self.fleet.readiness,
            versions=lambda name: list(self.model(name).versions),
            split_by_user=lambda name: self.model(name).sticky_key is not None,
            interfaces=self.versions.interface_diff,
            predictions=self.unreadable_predictions,
        )
        if self.config.controller.enabled and not self.stopping:
            # Not once a stop has begun (uvicorn tells the app at the signal, also while
            # it starts): the controller would only take the lease to give it back.
            self._start_controller()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            # SIGHUP reloads the config's models, as daemons do; not where the loop
            # cannot take signal handlers (a thread, or Windows).
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_hangup)
        self.started = True

    def _on_hangup(self) -> None:
        if self.on_hangup is not None:
            self.on_hangup()
            return
        self.ctx.later(self._reload_logged())

    async def _reload_logged(self) -> None:
        try:
            await self.reload_config("SIGHUP")
        except Exception as error:
            log.error("config reload refused, the previous config stays: %s", error)

    async def _read_catalog(self) -> dict[tuple[str, str], Any]:
        ctx = self.ctx
        stored = await ctx.db(ctx.store.list_models)
        registered = await ctx.db(ctx.store.list_versions)
        ctx.models = merge_catalog(self.config.models, stored)
        return desired_versions(ctx.models, registered)

    async def refresh_catalog(self) -> None:
        """Follow the store's catalog: load versions added anywhere in the fleet and
        unload those retired or parked (called when the state counter moved)."""
        desired = await self._read_catalog()
        self.versions.sync(desired)

    def _versions_changed(self) -> None:
        self.routing.rebuild()
        if self.started:
            self.ctx.later(self._report())

    async def _report(self) -> None:
        try:
            await self.membership.report()
        except Exception:
            log.exception("reporting version states failed; retried with the next heartbeat")

    def _start_controller(self) -> None:
        settings = self.config.controller
        loop = asyncio.get_running_loop()

        def routing_changed() -> None:
            # The controller wrote new routing: this replica applies it now rather
            # than at its next poll.
            asyncio.run_coroutine_threadsafe(self.routing.refresh(), loop)

        self.controller = Controller(
            self.store,
            clock=self.clock,
            interval_s=settings.interval_s,
            lease_ttl_s=settings.lease_ttl_s,
            settle_s=self.config.settle_s,
            # The replica id is unique even where containers share a hostname and a
            # pid: two holders of one name would both renew one lease, and fencing
            # could not tell them apart.
            holder=self.replica,
            readiness=self.fleet.readiness,
            fleet=self.fleet,
            unload_previous=settings.unload_previous,
            on_routing=routing_changed,
            gate_reader=GateReader(self.config.providers),
            notify=self.notifier.publish,
        )
        # Its own thread: a tick reads and judges metrics, which must not hold up
        # the event loop that serves requests.
        self._controller_job = loop.run_in_executor(None, self.controller.run)

    def begin_stop(self) -> None:
        """The first step of a stop, taken the moment it is asked for: readiness fails
        from now on, so that load balancers stop sending, and the controller lets its
        lease go after its current tick, so that another replica's takes over at once.
        Requests in flight are still answered; :meth:`stop` does the rest."""
        if self.stopping:
            return
        self.stopping = True
        # Monotonic, not self.clock: it only times the stop for the log.
        self._stop_began_s = time.monotonic()
        log.info("stopping: readiness answers 503 from now on")
        if self.controller is not None:
            self.controller.stop()

    async def stop(self) -> None:
        """Stop this replica after its requests were answered: the controller's lease
        released, mirrors dropped, metrics and predictions flushed, the fleet told."""
        self.begin_stop()
        if self.controller is not None:
            if self._controller_job is not None:
                with contextlib.suppress(Exception):
                    await self._controller_job
            self.controller = None
        # The controller's last events are queued by now: give them a moment to go out.
        await asyncio.get_running_loop().run_in_executor(None, self.notifier.close)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        # A shadow's answer is only ever compared, never returned: not worth a wait.
        # Dropped before the flush, so that what they answered and what they dropped
        # is counted in it.
        await self.serving.drain_mirrors(timeout_s=0)
        self.ctx.cancel_background()
        if self.ctx.has_store:
            try:
                await self.telemetry.flush()
            except Exception:
                log.exception("the last metrics and logged predictions could not be written")
            else:
                log.info("mirrors dropped; metrics and the prediction log flushed")
            if self._joined:
                await self.membership.leave()
                self._joined = False
        await self.versions.close()
        if self.ctx.tracer is not None:
            # Exports the spans still buffered (a blocking call: off the loop).
            await asyncio.get_running_loop().run_in_executor(None, self.ctx.tracer.close)
        if self.ctx.has_store:
            await self.ctx.db(self.store.close)
        self.ctx.close()
        self.started = False
        log.info(
            "gateway stopped, %.1f s after its stop began", time.monotonic() - self._stop_began_s
        )

    async def _every(
        self, interval_s: float, job: Callable[[], Any], remind_s: float = 60.0
    ) -> None:
        """Run ``job`` every ``interval_s`` until cancelled.

        A failing job is logged once with its traceback, then reminded of in one line
        at most every ``remind_s``, and its recovery is logged: a store that is down
        must not fill the log with a traceback per job and interval.
        """
        name = getattr(job, "__qualname__", repr(job))
        failing_since: float | None = None
        failures = 0
        reminded_at = 0.0
        while True:
            await asyncio.sleep(interval_s)
            try:
                await job()
            except Exception as error:
                # Monotonic, not self.clock: this paces log lines in real time.
                now = time.monotonic()
                failures += 1
                if failing_since is None:
                    failing_since = reminded_at = now
                    log.exception("background job %s failed; retrying every %g s", name, interval_s)
                elif now - reminded_at >= remind_s:
                    reminded_at = now
                    log.error(
                        "background job %s still failing (%d times in %.0f s): %s: %s",
                        name,
                        failures,
                        now - failing_since,
                        type(error).__name__,
                        error,
                    )
            else:
                if failing_since is not None:
                    log.warning(
                        "background job %s recovered after %d failures in %.0f s",
                        name,
                        failures,
                        time.monotonic() - failing_since,
                    )
                    failing_since, failures = None, 0

    async def prune(self) -> None:
        await self.telemetry.prune()
        horizon = self.clock() - max(3600.0, 10 * self.config.server.heartbeat_timeout_s)
        await self.ctx.db(self.store.prune_replicas, horizon)

    # commands -------------------------------------------------------------------------
    async def set_routing(
        self,
        model_name: str,
        weights: Mapping[str, object],
        mirrors: Mapping[str, object],
        actor: str,
        force: bool = False,
    ) -> Routing:
        return await self.routing.set_routing(
            model_name, weights, mirrors, actor, self.rollouts.command, force=force
        )

    async def reload_version(self, model: str, version: str, actor: str) -> VersionState:
        return await self.versions.reload(model, version, actor)

    async def refresh_routing(self, force: bool = False) -> None:
        await self.routing.refresh(force=force)

    async def register_version(
        self, model: str, name: str, body: Mapping[str, Any], actor: str
    ) -> Registered:
        registered = await self.registry.register_version(model, name, body, actor)
        if registered.created:
            # This replica starts loading it now; the others at their next poll.
            await self.routing.refresh()
        return registered

    async def retire_version(self, model: str, name: str, actor: str) -> RegisteredVersion:
        retired = await self.registry.retire_version(model, name, actor)
        await self.routing.refresh()
        return retired

    async def create_model(self, name: str, body: Mapping[str, Any], actor: str) -> bool:
        created = await self.registry.create_model(name, body, actor)
        if created:
            await self.routing.refresh()
        return created

    async def reload_config(self, actor: str) -> list[str]:
        """Read the config file again and follow its models: a config-managed version
        whose spec changed is loaded anew (the old one serves until it is ready), one
        removed is retired (refused, with nothing changed, while it still serves).
        Other sections take effect at the next start. Returns what changed."""
        from rollwise.config import load_config

        path = self.config.base_dir / self.config.source
        loop = asyncio.get_running_loop()
        fresh = await loop.run_in_executor(None, load_config, path)
        before = {name: dict(model.versions) for name, model in self.config.models.items()}
        written = await self.ctx.db(
            self.store.sync_models, list(fresh.models.values()), self.clock()
        )
        self.config = dataclasses.replace(self.config, models=fresh.models, labels=fresh.labels)
        self.ctx.config = self.config
        changes = _model_changes(before, fresh.models)
        changes += [event.message for event in written]
        await self.routing.refresh(force=True)
        summary = "; ".join(changes) or "no change"
        await self.ctx.event("*", "config.reloaded", f"config reloaded: {summary}", actor)
        log.info("config reloaded from %s: %s", path, summary)
        return changes

    async def prepare_rollback(self, model: str, actor: str) -> None:
        """When the model's last promotion is to be rolled back and its previous stable
        was unloaded meanwhile, load it again everywhere and wait until it is ready."""
        latest = await self.ctx.db(self.store.latest_rollout, model)
        if latest is None or latest.phase != Phase.PROMOTED.value:
            return
        status = RolloutStatus.from_dict(latest.status)
        previous = status.previous_stable
        if previous is None:
            return
        stored = await self.ctx.db(self.store.get_version, model, previous)
        if stored is None or stored.keep_loaded:
            return
        await self.registry.bring_back(
            model, previous, actor, timeout_s=self.config.controller.rollback_load_timeout_s
        )


def _model_changes(
    before: Mapping[str, Mapping[str, VersionSpec]], after: Mapping[str, ModelSpec]
) -> list[str]:
    """What a config reload changed, one line per model and version."""
    changes: list[str] = []
    for name in sorted(set(before) | set(after)):
        old = before.get(name, {})
        new = dict(after[name].versions) if name in after else {}
        for version in sorted(set(old) | set(new)):
            if version not in old:
                changes.append(f"{name}/{version} added")
            elif version not in new:
                changes.append(f"{name}/{version} removed")
            elif old[version] != new[version]:
                changes.append(f"{name}/{version} changed")
    return changes
