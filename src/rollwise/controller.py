"""The rollout controller: the only loop that does I/O for rollouts.

Every tick the controller that holds the store's lease loads each rollout in progress,
reads the metric buckets since its current weights took effect, judges them
(:func:`rollwise.rollout.gather`), decides (:func:`rollwise.rollout.decide`) and writes
the new status, the routing and the events in one transaction, fenced by its lease.
Killed at any point, it leaves either the whole step change or none of it, and the
next leader goes on from the stored status.

:class:`Rollouts` is the other way in: a person's ``apply``, ``pause``, ``resume``,
``promote``, ``abort`` and ``rollback`` through the same state machine, each checked
against the rollout's stored revision so it never overwrites a tick it did not see.
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
from typing import Any

from rollwise.domain import Event, Role, Routing
from rollwise.errors import ConfigError, Conflict, NotFound
from rollwise.metrics.recorder import VersionWindow, merge_by_version, windows_by_version
from rollwise.rollout import (
    Command,
    CommandKind,
    Decision,
    Note,
    Phase,
    RolloutSpec,
    RolloutStatus,
    RoutingPlan,
    Strategy,
    decide,
    describe_step,
    gather,
    halt,
    parse_rollout_spec,
    routing_for,
    start,
)
from rollwise.store.base import RolloutRow, Store

log = logging.getLogger("rollwise.controller")

LEASE_NAME = "controller"
COMMAND_RETRIES = 5
"""A command races at most a tick or two of the controller; it retries on a newer
revision instead of failing the person who asked."""

Readiness = Callable[[str, str], tuple[bool, str]]
"""(model, version) -> (ready, why not); a gateway answers from its loaded versions."""


def always_ready(_model: str, _version: str) -> tuple[bool, str]:
    return True, ""


@dataclass(frozen=True, slots=True)
class Rollout:
    """A stored rollout with its spec and status parsed."""

    row: RolloutRow
    spec: RolloutSpec
    status: RolloutStatus
    problem: str = ""
    """Why the stored spec no longer parses; empty when it does."""

    @property
    def id(self) -> int:
        return int(self.row.id or 0)

    def summary(self) -> dict[str, Any]:
        """A one-line view for listings: model, strategy, phase, step, weights."""
        status = self.status
        return {
            "id": self.id,
            "model": status.model,
            "strategy": self.spec.strategy.value,
            "phase": status.phase.value,
            "step": min(status.step_index + 1, len(self.spec.steps)),
            "steps": len(self.spec.steps),
            "stable": status.stable,
            "candidate": status.candidate,
            "weight": status.weight,
            "mirror": status.mirror,
            "message": status.message,
        }

    def to_dict(self) -> dict[str, Any]:
        """The summary, plus the spec, its compiled steps and the whole status."""
        return {
            **self.summary(),
            "revision": self.row.revision,
            "spec": self.spec.to_dict(),
            "plan": [step.to_dict() for step in self.spec.steps],
            "plan_text": [describe_step(step) for step in self.spec.steps],
            "status": self.status.to_dict(),
        }


def load(row: RolloutRow) -> Rollout:
    """Parse a stored rollout. A spec that this rollwise no longer accepts (written by
    an older one) still loads, with no steps and the reason in ``problem``, so that it
    can be listed and the controller can end it instead of failing on it every tick."""
    status = RolloutStatus.from_dict(row.status)
    try:
        return Rollout(row, parse_rollout_spec(row.spec), status)
    except ConfigError as error:
        raw = row.spec.get("strategy")
        strategy = Strategy(raw) if raw in {s.value for s in Strategy} else Strategy.STEPS
        spec = RolloutSpec(row.model, status.candidate, strategy, (), raw=dict(row.spec))
        return Rollout(row, spec, status, problem=str(error))


def _events(decision: Decision, model: str, rollout_id: int | None, now: float) -> list[Event]:
    return [
        Event(
            model=model,
            kind=note.kind,
            message=note.message,
            data={**note.data, "rollout": rollout_id},
            at_s=now,
            actor=str(note.data.get("actor") or "controller"),
        )
        for note in decision.notes
    ]


def _routing(plan: RoutingPlan | None, model: str, salt: str) -> Routing | None:
    if plan is None:
        return None
    return Routing(model, plan.stable, dict(plan.weights), dict(plan.mirrors), salt)


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


def _row(rollout_row: RolloutRow, status: RolloutStatus, now: float) -> RolloutRow:
    return RolloutRow(
        model=rollout_row.model,
        phase=status.phase.value,
        spec=rollout_row.spec,
        status=status.to_dict(),
        created_at_s=rollout_row.created_at_s,
        updated_at_s=now,
        revision=rollout_row.revision,
        id=rollout_row.id,
    )


class Rollouts:
    """Start rollouts and carry out a person's commands on them (synchronous: the
    server calls it from a worker thread)."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        readiness: Readiness = always_ready,
        versions: Callable[[str], Sequence[str]] | None = None,
        split_by_user: Callable[[str], bool] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.readiness = readiness
        self._versions = versions
        self._split_by_user = split_by_user or (lambda _model: False)

    def _salt(self, model: str) -> str:
        routing = self.store.get_routing(model)
        return routing.salt if routing is not None else model

    def check(self, data: Any) -> RolloutSpec:
        """Parse a spec and check it against the model, changing nothing."""
        return self._checked(data)[0]

    def _checked(self, data: Any) -> tuple[RolloutSpec, Routing]:
        spec = parse_rollout_spec(data)
        routing = self.store.get_routing(spec.model)
        if routing is None:
            raise NotFound(f"unknown model {spec.model!r}")
        if self._versions is not None:
            known = list(self._versions(spec.model))
            if spec.candidate not in known:
                raise NotFound(
                    f"model {spec.model!r} has no version {spec.candidate!r} "
                    f"(versions: {', '.join(known)})"
                )
        if spec.candidate == routing.stable:
            raise Conflict(
                f"model {spec.model!r}: {spec.candidate!r} is already the stable version"
            )
        ready, why = self.readiness(spec.model, spec.candidate)
        if not ready:
            raise Conflict(
                f"model {spec.model!r}: candidate {spec.candidate!r} is not ready ({why})"
            )
        return spec, routing

    def apply(self, data: Any, *, actor: str, replace: bool = False) -> Rollout:
        """Start a rollout; with ``replace``, abort the one in progress in the same
        transaction. A bad spec, an unknown or unready candidate, or a rollout already
        in progress is refused before anything changes."""
        spec, routing = self._checked(data)
        now = self.clock()
        replacing: RolloutRow | None = None
        events: list[Event] = []
        stable = routing.stable
        if replace:
            current = self.store.latest_rollout(spec.model)
            if current is not None and Phase(current.phase).active:
                old = load(current)
                ended = decide(
                    old.spec,
                    old.status,
                    None,
                    now,
                    Command(CommandKind.ABORT, actor, "replaced by a new rollout"),
                )
                replacing = _row(current, ended.status, now)
                events += _events(ended, spec.model, current.id, now)
                stable = old.status.stable
        decision = start(
            spec,
            stable=stable,
            now=now,
            actor=actor,
            split_by_user=self._split_by_user(spec.model),
        )
        row = RolloutRow(
            model=spec.model,
            phase=decision.status.phase.value,
            spec=spec.to_dict(),
            status=decision.status.to_dict(),
            created_at_s=now,
            updated_at_s=now,
        )
        stored = self.store.start_rollout(
            row,
            events + _events(decision, spec.model, None, now),
            _routing(decision.routing, spec.model, routing.salt),
            replacing=replacing,
        )
        return load(stored)

    def get(self, model: str) -> Rollout:
        row = self.store.latest_rollout(model)
        if row is None:
            raise NotFound(f"model {model!r} has no rollout")
        return load(row)

    def list(self, model: str | None = None, *, active_only: bool = False) -> list[Rollout]:
        rows = self.store.list_rollouts(model, active_only=active_only)
        return [load(row) for row in rows]

    def command(self, model: str, command: Command) -> Rollout:
        """Carry out ``command`` on the model's latest rollout.

        A save that lost a race with a controller tick is tried again on the new
        status, except a ``promote`` whose step has moved on meanwhile: letting go of
        the next step would skip one the person never saw, so it is refused instead.
        """
        seen: tuple[int | None, int] | None = None
        for _ in range(COMMAND_RETRIES):
            rollout = self.get(model)
            position = (rollout.row.id, rollout.status.step_index)
            if command.kind is CommandKind.PROMOTE and seen is not None and position != seen:
                raise Conflict(
                    f"the rollout of {model!r} moved on to step {rollout.status.step_index + 1} "
                    "meanwhile; nothing was skipped — promote again to let that step go"
                )
            seen = position
            if rollout.problem and command.kind not in (CommandKind.ABORT, CommandKind.ROLLBACK):
                raise Conflict(
                    f"the rollout of {model!r} cannot go on, its spec is invalid "
                    f"({rollout.problem}); abort it"
                )
            if command.kind is CommandKind.ROLLBACK and rollout.status.phase is Phase.PROMOTED:
                previous = rollout.status.previous_stable or rollout.status.stable
                ready, why = self.readiness(model, previous)
                if not ready:
                    raise Conflict(
                        f"model {model!r}: cannot roll back to {previous!r}, it is not "
                        f"loaded ({why})"
                    )
            now = self.clock()
            decision = decide(rollout.spec, rollout.status, None, now, command)
            try:
                saved = self.store.save_rollout(
                    _row(rollout.row, decision.status, now),
                    expected_revision=rollout.row.revision,
                    routing=_routing(decision.routing, model, self._salt(model)),
                    events=_events(decision, model, rollout.id, now),
                )
            except Conflict:
                if self.store.get_rollout(rollout.id) is None:
                    raise
                continue
            return load(saved)
        raise Conflict(f"the rollout of {model!r} kept changing; try again")


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
        on_routing: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
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
            return []
        if not self.leader:
            log.info("controller %s leads (lease epoch %d)", self.holder, lease.epoch)
        self.leader, self.epoch = True, lease.epoch
        changed: list[Rollout] = []
        rows = self.store.list_rollouts(active_only=True, limit=None)
        for gone in set(self._sums) - {int(row.id or 0) for row in rows}:
            del self._sums[gone]
        for row in rows:
            try:
                result = self._step(row, now)
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
        return changed

    def _step(self, row: RolloutRow, now: float) -> Rollout | None:
        rollout = load(row)
        status = rollout.status
        if rollout.problem:
            decision = halt(rollout.spec, status, f"its spec is invalid: {rollout.problem}", now)
        else:
            windows = self._measure(rollout.id, status, now)
            ready, why = self.readiness(status.model, status.candidate)
            evidence = gather(
                rollout.spec, status, windows, candidate_ready=ready, candidate_problem=why
            )
            decision = decide(rollout.spec, status, evidence, now)
        current = self.store.get_routing(status.model)
        if decision.routing is None and decision.status.phase.active:
            decision = _repaired(decision, current)
        if decision.status == status and decision.routing is None and not decision.notes:
            return None
        routing = None
        if decision.routing is not None:
            salt = current.salt if current is not None else status.model
            routing = _routing(decision.routing, status.model, salt)
        saved = self.store.save_rollout(
            _row(row, decision.status, now),
            expected_revision=row.revision,
            routing=routing,
            events=_events(decision, status.model, row.id, now),
            lease=(LEASE_NAME, self.holder, self.epoch),
        )
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
        start), so no bucket arrives that far behind.
        """
        since = math.ceil(status.measure_since_s + self.settle_s)
        cached = self._sums.get(rollout_id)
        if cached is None or cached.since != since:
            cached = _Sums(since, since, {})
            self._sums[rollout_id] = cached
        buckets = self.store.read_metric_buckets(status.model, cached.settled_until)
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
        if self.leader:
            try:
                self.store.release_lease(LEASE_NAME, self.holder)
            except Exception:
                log.exception("releasing the controller lease failed; it expires by itself")

    def stop(self) -> None:
        self._stop.set()
