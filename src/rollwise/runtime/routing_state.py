"""One replica's routing: stored routing compiled into tables the request path reads.

The tables are an immutable mapping replaced whole, so a request sees the old tables or
the new ones, never a mix. They are rebuilt when the stored routing changes (polled by
the state counter), when a version here becomes ready or goes away, and when this
replica itself writes new routing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from functools import partial

from rollwise.domain import Event, Routing
from rollwise.errors import Conflict
from rollwise.rollout import Command, CommandKind, Phase
from rollwise.routing import ModelTable, build_table, check_routing
from rollwise.runtime.context import Context
from rollwise.runtime.versions import Versions, describe

USERS_TRACKED = 1_000_000
"""Distinct sticky users remembered per model under one routing, as 64-bit hashes (about
60 MB at most, whatever the keys' length); beyond it new users go uncounted, alike for
every version."""


class RoutingState:
    """Stored routing per model and the tables compiled from it."""

    def __init__(self, ctx: Context, versions: Versions) -> None:
        self.ctx = ctx
        self.versions = versions
        self.routings: dict[str, Routing] = {}
        self.tables: Mapping[str, ModelTable] = {}
        self.users_seen: dict[str, set[int]] = {}
        self.state_version = -1
        self._lock = asyncio.Lock()
        self.on_stored_change: Callable[[], object] | None = None
        """Called (and awaited if it returns an awaitable) when the state counter moved:
        the catalog of models and versions may have changed too."""

    async def refresh(self, force: bool = False) -> bool:
        """Rebuild the tables when the stored state changed (or when forced); True
        when it had changed."""
        # One refresh at a time (the poll, the controller's nudge and a command's can
        # coincide): a slower, older read must never replace a newer one.
        async with self._lock:
            store = self.ctx.store
            state_version = await self.ctx.db(store.state_version)
            if not force and state_version == self.state_version:
                return False
            routings = await self.ctx.db(store.list_routings)
            self.state_version = state_version
            self.routings = {r.model: r for r in routings}
            if self.on_stored_change is not None:
                result = self.on_stored_change()
                if asyncio.iscoroutine(result):
                    await result
            self.rebuild()
            return True

    def rebuild(self) -> None:
        tables: dict[str, ModelTable] = {}
        for name, model in self.ctx.models.items():
            routing = self.routings.get(name) or Routing(
                name, model.stable, {model.stable: 100}, salt=model.effective_salt
            )
            tables[name] = build_table(
                routing, self.versions.ready_versions(name), model.sticky_key
            )
        previous, self.tables = self.tables, tables
        # Users are counted anew when a model's routing changes: the sample-ratio check
        # compares the users each version got with its weight since then. Only then:
        # counting a user twice under one routing would overstate the evidence.
        for name, table in tables.items():
            old = previous.get(name)
            if table.sticky_key and (old is None or old.routing != table.routing):
                self.users_seen[name] = set()

    async def set_routing(
        self,
        model_name: str,
        weights: Mapping[str, object],
        mirrors: Mapping[str, object],
        actor: str,
        abort_rollout: Callable[[str, Command], object],
        force: bool = False,
    ) -> Routing:
        ctx = self.ctx
        model = ctx.model(model_name)
        current = self.routings.get(model_name)
        routing = check_routing(model, weights, mirrors, current)
        ready = self.versions.ready_versions(model_name)
        not_ready = [v for v in [*routing.weights, *routing.mirrors] if v not in ready]
        if not_ready:
            reasons = "; ".join(
                f"{v}: {describe(self.versions.state(model_name, v))}" for v in not_ready
            )
            raise Conflict(
                f"model {model_name!r}: cannot route to versions that are not ready: {reasons}"
            )
        if force:
            # Routing set by hand ends the rollout in progress first: left running, it
            # would judge a split it did not make and put its own weights back.
            latest = await ctx.db(ctx.store.latest_rollout, model_name)
            if latest is not None and Phase(latest.phase).active:
                abort = Command(CommandKind.ABORT, actor, "routing set by hand")
                await ctx.db(abort_rollout, model_name, abort)
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
            at_s=ctx.clock(),
            actor=actor,
        )
        await ctx.db(partial(ctx.store.set_routing, routing, event, force=force))
        self.routings[model_name] = routing
        self.rebuild()
        return routing
