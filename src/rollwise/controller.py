"""The rollout controller: the only loop that does I/O for rollouts.

Every tick the controller that holds the store's lease loads each rollout in progress,
reads the metric buckets since its current weights took effect, judges them
(:func:`rollwise.rollout.gather`), decides (:func:`rollwise.rollout.decide`) and writes
the new status, the routing and the events in one transaction, fenced by its lease.
Killed at any point, it leaves either the whole step change or none of it, and the
next leader goes on from the stored status.

A person's commands take the other way in, :class:`rollwise.rollouts.Rollouts`, through
the same state machine.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from rollwise.analysis.external import Reading
from rollwise.analysis.gates import Gate
from rollwise.domain import Event, Role, Routing
from rollwise.errors import Conflict
from rollwise.fleet import CandidateVerdict, due_for_unload
from rollwise.metrics.recorder import VersionWindow, merge_by_version, windows_by_version
from rollwise.providers.hooks import HookCalls
from rollwise.providers.reader import GateReader, requests_for
from rollwise.rollout import (
    Decision,
    Note,
    Phase,
    RolloutStatus,
    RoutingPlan,
    decide,
    gather,
    halt,
    routing_for,
)
from rollwise.rollout.hooks import HookKind
from rollwise.rollouts import (
    Readiness,
    Rollout,
    always_ready,
    decision_events,
    load,
    plan_routing,
    rollout_row,
)
from rollwise.store.base import RolloutRow, Store

log = logging.getLogger("rollwise.controller")

LEASE_NAME = "controller"


class FleetVerdicts(Protocol):
    """Whether the fleet has a candidate ready, is still loading it, or failed to."""

    def verdict(self, model: str, version: str) -> tuple[CandidateVerdict, str]: ...


def _same_routing(plan: RoutingPlan, routing: Routing | None) -> bool:
    if routing is None:
        return False

    def shares(values: Mapping[str, int]) -> dict[str, int]:
        return {version: share for version, share in values.items() if share}

    return (
        plan.stable == routing.stable
        and shares(plan.weights) == shares(routing.weights)
        and shares(plan.mirrors) == shares(routing.mirrors)
    )


def _repaired(decision: Decision, current: Routing | None) -> Decision:
    """The decision, plus the rollout's routing written again when the stored routing
    is not what its status stands for (e.g. a config change reset it): a rollout in
    progress owns its model's routing, as a reconciler owns its resources."""
    plan = routing_for(decision.status)
    if _same_routing(plan, current):
        return decision
    shown = ", ".join(f"{v}={w}" for v, w in plan.weights.items())
    note = Note(
        "rollout.routing_restored",
        f"routing was not the rollout's; set again to {shown}",
        {"found": current.to_dict() if current else None, "actor": "controller"},
    )
    return dataclasses.replace(decision, routing=plan, notes=(*decision.notes, note))


PARK_EVERY_S = 5.0
"""How often the leader looks for previous stable versions to unload."""

SETTLED_AFTER_S = 180.0
"""Metric buckets that started longer ago than this are summed once per rollout and not
read again. A gateway stamps a bucket with the start of its flush window (at most
``flush_interval_s``, 60 s, before the write); the rest is room for clock skew between
machines and a slow commit."""

Windows = dict[tuple[str, Role], VersionWindow]


@dataclass
class _Sums:
    """What one rollout's step has measured so far, folded up to ``settled_until``."""

    since: int
    settled_until: int
    settled: Windows


class Controller:
    """The loop that moves rollouts on: one leader at a time, by the store's lease."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        interval_s: float = 1.0,
        lease_ttl_s: float = 10.0,
        settle_s: float = 2.0,
        holder: str | None = None,
        readiness: Readiness = always_ready,
        fleet: FleetVerdicts | None = None,
        unload_previous: bool = False,
        on_routing: Callable[[], None] | None = None,
        gate_reader: GateReader | None = None,
        notify: Callable[[Sequence[Event]], None] | None = None,
        hooks: HookCalls | None = None,
    ) -> None:
        self.store = store
        # Reads prometheus and web gates off the tick's thread, within their timeouts.
        self.gate_reader = gate_reader or GateReader()
        self.hooks = hooks or HookCalls()
        self._active: set[int] = set()
        """Rollouts in progress at the last tick: one gone since has ended (outcome hooks)."""
        # Told the events this leader saved, after they are saved (notifications):
        # it only queues them, never waits on a receiver.
        self.notify = notify
        self.fleet = fleet
        self.unload_previous = unload_previous
        self._parked_at_s = -math.inf
        self.clock = clock
        self.interval_s = interval_s
        self.lease_ttl_s = max(lease_ttl_s, 2 * interval_s)
        self.settle_s = settle_s
        self.holder = holder or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self.readiness = readiness
        self.on_routing = on_routing
        self.leader = False
        self.epoch = 0
        self._stop = threading.Event()
        self._sums: dict[int, _Sums] = {}

    # one tick ------------------------------------------------------------------------
    def tick(self) -> list[Rollout]:
        """Take or renew the lease, then move every rollout in progress one step of
        time on. Returns the rollouts it changed."""
        now = self.clock()
        lease = self.store.acquire_lease(LEASE_NAME, self.holder, now, self.lease_ttl_s)
        if lease is None:
            if self.leader:
                log.warning("lost the controller lease; another controller acts now")
            self.leader = False
            self._active = set()
            return []
        if not self.leader:
            log.info("controller %s leads (lease epoch %d)", self.holder, lease.epoch)
        self.leader, self.epoch = True, lease.epoch
        changed: list[Rollout] = []
        rows = self.store.list_rollouts(active_only=True, limit=None)
        for gone in set(self._sums) - {int(row.id or 0) for row in rows}:
            del self._sums[gone]
        try:
            self._hook_outcomes({int(row.id or 0) for row in rows}, now)
        except Exception:
            log.exception("outcome hooks: reading ended rollouts failed; retrying")
        readings = self._read_gates(rows, now)
        for row in rows:
            try:
                result = self._step(row, now, readings.get(int(row.id or 0), {}))
            except Conflict as error:
                # A person's command or a new leader wrote first; read again next tick.
                log.info("rollout #%s: %s", row.id, error)
                continue
            except Exception:
                # One rollout that cannot be moved must not hold up the others.
                log.exception("rollout #%s of %s: tick failed; retrying", row.id, row.model)
                continue
            if result is not None:
                changed.append(result)
        if self.unload_previous and now - self._parked_at_s >= PARK_EVERY_S:
            self._parked_at_s = now
            try:
                self._park(now)
            except Exception:
                log.exception("unloading previous stable versions failed; retrying")
        return changed

    def _hook_outcomes(self, active: set[int], now: float) -> None:
        """Call the outcome hooks (post_promotion, on_rollback) of the rollouts that
        ended since the last tick, by this controller or by a person's command, and
        write the events of hook calls that have ended."""
        self.hooks.forget(active)
        for rollout_id in sorted(self._active - active):
            row = self.store.get_rollout(rollout_id)
            if row is None:
                continue
            ended = load(row)
            phase = ended.status.phase
            if phase is Phase.PROMOTED:
                kind, calls = HookKind.POST_PROMOTION, ended.spec.hooks.post_promotion
            elif phase in (Phase.ROLLED_BACK, Phase.FAILED):
                kind, calls = HookKind.ON_ROLLBACK, ended.spec.hooks.on_rollback
            else:
                continue
            self.hooks.notify(rollout_id, ended.spec, ended.status, kind, calls, now)
        self._active = active
        for event in self.hooks.drain_events():
            self.store.add_event(event)

    def _park(self, now: float) -> None:
        """Let go of each previous stable whose instant-rollback window has passed: it
        stays registered, but no replica keeps it in memory any more."""
        for routing in self.store.list_routings():
            latest = self.store.latest_rollout(routing.model)
            if latest is None or latest.phase != Phase.PROMOTED.value:
                continue
            status = RolloutStatus.from_dict(latest.status)
            version = due_for_unload(routing, status, now)
            if version is None:
                continue
            stored = self.store.get_version(routing.model, version)
            if stored is None or not stored.keep_loaded:
                continue
            event = Event(
                model=routing.model,
                kind="version.unloaded",
                message=(
                    f"version {version} unloaded from every replica: the rollback window "
                    f"after rollout #{latest.id} has passed (it stays registered; a rollback "
                    "loads it again first)"
                ),
                data={"version": version, "rollout": latest.id},
                at_s=now,
                actor="controller",
            )
            if self.store.set_keep_loaded(routing.model, version, False, event):
                log.info("%s: %s", routing.model, event.message)

    def _read_gates(self, rows: list[RolloutRow], now: float) -> dict[int, dict[Gate, Reading]]:
        """The external gates every rollout judges this tick, read all at once: the
        tick waits at most the longest of their timeouts, not their sum."""
        requests = []
        for row in rows:
            try:
                rollout = load(row)
            except Exception:
                continue  # _step reports it
            if not rollout.problem:
                requests += requests_for(rollout.id, rollout.spec, rollout.status, now)
        return self.gate_reader.read(requests)

    def _step(
        self, row: RolloutRow, now: float, readings: Mapping[Gate, Reading] | None = None
    ) -> Rollout | None:
        rollout = load(row)
        status = rollout.status
        if rollout.problem:
            decision = halt(rollout.spec, status, f"its spec is invalid: {rollout.problem}", now)
        else:
            if self.fleet is not None:
                verdict, why = self.fleet.verdict(status.model, status.candidate)
                if verdict is CandidateVerdict.WAIT and status.phase is not Phase.PAUSED:
                    # Some live replica is still loading the candidate (a replica that
                    # joined, or one that reloads it): no step moves on, so no share
                    # rises, until the whole fleet has it ready.
                    log.info("rollout #%s waits: %s", row.id, why)
                    return None
                ready = verdict is CandidateVerdict.READY
            else:
                ready, why = self.readiness(status.model, status.candidate)
            windows = self._measure(rollout.id, status, now)
            evidence = gather(
                rollout.spec,
                status,
                windows,
                candidate_ready=ready,
                candidate_problem=why,
                readings=readings,
            )
            # A hook step's call runs off the tick; its outcome arrives in a later one.
            hook = self.hooks.poll(rollout.id, rollout.spec, status, now)
            evidence = dataclasses.replace(evidence, hook=hook)
            decision = decide(rollout.spec, status, evidence, now)
        current = self.store.get_routing(status.model)
        if decision.routing is None and decision.status.phase.active:
            decision = _repaired(decision, current)
        if decision.status == status and decision.routing is None and not decision.notes:
            return None
        routing = None
        if decision.routing is not None:
            salt = current.salt if current is not None else status.model
            routing = plan_routing(decision.routing, status.model, salt)
        events = decision_events(decision, status.model, row.id, now)
        saved = self.store.save_rollout(
            rollout_row(row, decision.status, now),
            expected_revision=row.revision,
            routing=routing,
            events=events,
            lease=(LEASE_NAME, self.holder, self.epoch),
        )
        if self.notify is not None:
            self.notify(events)
        for note in decision.notes:
            log.info("%s: %s", status.model, note.message)
        if routing is not None and self.on_routing is not None:
            self.on_routing()
        return load(saved)

    def _measure(self, rollout_id: int, status: RolloutStatus, now: float) -> Windows:
        """Merged windows of every version since the current weights settled.

        Buckets older than ``SETTLED_AFTER_S`` are folded once into a per-rollout sum
        and only the recent ones are read again each tick, so a tick costs the same
        an hour into a step as a few minutes into it. A gateway stamps a bucket with
        the start of the window it flushes (a retried write carries the new window's
        start), so no bucket arrives that far behind, late labels included: their
        buckets start when they arrived. Late labels of predictions made before the
        step do not count: they grade answers given under the previous weights.
        """
        since = math.ceil(status.measure_since_s + self.settle_s)
        cached = self._sums.get(rollout_id)
        if cached is None or cached.since != since:
            cached = _Sums(since, since, {})
            self._sums[rollout_id] = cached
        buckets = [
            b
            for b in self.store.read_metric_buckets(status.model, cached.settled_until)
            if b.measured_s >= since
        ]
        cut = math.floor(now - SETTLED_AFTER_S)
        old = [b for b in buckets if b.start_s < cut]
        if old:
            cached.settled = merge_by_version(
                [cached.settled, windows_by_version((b.version, b.role, b.payload) for b in old)]
            )
            cached.settled_until = max(cached.settled_until, cut)
        recent = windows_by_version(
            (b.version, b.role, b.payload) for b in buckets if b.start_s >= cut
        )
        return merge_by_version([cached.settled, recent])

    # the loop ------------------------------------------------------------------------
    def run(self) -> None:
        """Tick every ``interval_s`` until :meth:`stop`; errors are logged and retried."""
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:
                log.exception("controller tick failed; retrying next interval")
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
        self.gate_reader.close()
        self.hooks.close()
        if not self.leader:
            log.info("controller %s stopped", self.holder)
            return
        try:
            self.store.release_lease(LEASE_NAME, self.holder)
        except Exception:
            log.exception("releasing the controller lease failed; it expires by itself")
            return
        self.leader = False
        log.info(
            "controller %s stopped and released its lease: another controller takes over "
            "at its next tick",
            self.holder,
        )

    def stop(self) -> None:
        """End :meth:`run` after the tick in progress, if any; it then releases the
        lease. Safe from any thread, and from a signal handler."""
        self._stop.set()
