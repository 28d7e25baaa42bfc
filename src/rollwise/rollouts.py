"""Rollouts as people and the control API see them: start one, list them, and carry out
a person's commands (pause, resume, promote, abort, rollback).

Every command goes through the same state machine as the controller's ticks
(:func:`rollwise.rollout.decide`) and is saved against the rollout's stored revision,
so it never overwrites a tick it did not see.

A rollout whose candidate would break callers of the stable version (an output gone, an
input added, a datatype or shape changed: :mod:`rollwise.interface`) is refused unless
its spec says ``allow_interface_change: true``; the two are compared as loaded in this
replica, and a version not loaded here is not compared.

A rollout that gates on predictions (accuracy, error, agreement, drift) is refused when
rollwise cannot read the predictions of a version it would compare: a ``rest`` version
without ``output_path`` answers in a form only its clients know.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rollwise.domain import Event, Routing
from rollwise.errors import ConfigError, Conflict, NotFound
from rollwise.interface import InterfaceDiff
from rollwise.providers.settings import ProvidersSection
from rollwise.rollout import (
    Command,
    CommandKind,
    Decision,
    Phase,
    RolloutSpec,
    RolloutStatus,
    RoutingPlan,
    Strategy,
    decide,
    describe_step,
    parse_rollout_spec,
    start,
)
from rollwise.rollout.readings import check_sources
from rollwise.rollout.spec import prediction_metrics
from rollwise.store.base import RolloutRow, Store

COMMAND_RETRIES = 5
"""A command races at most a tick or two of the controller; it retries on a newer
revision instead of failing the person who asked."""

Readiness = Callable[[str, str], tuple[bool, str]]
"""(model, version) -> (ready, why not); a gateway answers from its loaded versions."""


Interfaces = Callable[[str, str, str], InterfaceDiff]
"""(model, stable, candidate) -> how the candidate's interface differs from the stable's."""

Predictions = Callable[[str, str], str]
"""(model, version) -> why rollwise cannot read the version's predictions; "" when it can."""


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


def decision_events(
    decision: Decision, model: str, rollout_id: int | None, now: float
) -> list[Event]:
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


def plan_routing(plan: RoutingPlan | None, model: str, salt: str) -> Routing | None:
    if plan is None:
        return None
    return Routing(model, plan.stable, dict(plan.weights), dict(plan.mirrors), salt)


def rollout_row(stored: RolloutRow, status: RolloutStatus, now: float) -> RolloutRow:
    """``stored`` with a new status, to save at its revision."""
    return RolloutRow(
        model=stored.model,
        phase=status.phase.value,
        spec=stored.spec,
        status=status.to_dict(),
        created_at_s=stored.created_at_s,
        updated_at_s=now,
        revision=stored.revision,
        id=stored.id,
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
        interfaces: Interfaces | None = None,
        predictions: Predictions | None = None,
        notify: Callable[[Sequence[Event]], None] | None = None,
        providers: ProvidersSection | None = None,
    ) -> None:
        self.store = store
        # Whether prometheus gates without an address of their own can be read.
        self._prometheus_url = (providers or ProvidersSection()).prometheus.url
        # A person's command is notified by the process that carried it out, once.
        self._notify = notify or (lambda _events: None)
        self._predictions = predictions
        self.clock = clock
        self.readiness = readiness
        self._versions = versions
        self._split_by_user = split_by_user or (lambda _model: False)
        self._interfaces = interfaces

    def _salt(self, model: str) -> str:
        routing = self.store.get_routing(model)
        return routing.salt if routing is not None else model

    def check(self, data: Any) -> RolloutSpec:
        """Parse a spec and check it against the model, changing nothing."""
        return self._checked(data)[0]

    def interface(self, spec: RolloutSpec) -> InterfaceDiff | None:
        """How the candidate's interface differs from the stable version's (for a dry
        run to show); None when this process cannot compare versions."""
        routing = self.store.get_routing(spec.model)
        return self._diff(spec, routing.stable) if routing is not None else None

    def _diff(self, spec: RolloutSpec, stable: str) -> InterfaceDiff | None:
        if self._interfaces is None:
            return None
        return self._interfaces(spec.model, stable, spec.candidate)

    def _checked(self, data: Any) -> tuple[RolloutSpec, Routing]:
        spec = parse_rollout_spec(data)
        check_sources(spec, prometheus_configured=self._prometheus_url is not None)
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
        self._check_predictions(spec, routing.stable)
        diff = self._diff(spec, routing.stable)
        if diff is not None and diff.breaking and not spec.allow_interface_change:
            shown = "\n".join(f"  {line}" for line in diff.lines())
            raise Conflict(
                f"model {spec.model!r}: candidate {spec.candidate!r} would break callers of "
                f"stable {routing.stable!r}, its interface differs:\n{shown}\n"
                "set allow_interface_change: true in the rollout spec to accept this "
                "(each caller then gets the metadata of the version it is routed to)"
            )
        return spec, routing

    def _check_predictions(self, spec: RolloutSpec, stable: str) -> None:
        """Refuse gates on predictions that cannot be read for the versions they compare."""
        if self._predictions is None:
            return
        candidate_metrics, stable_metrics = prediction_metrics(spec)
        blind: list[str] = []
        metrics: list[str] = []
        for version, needed in ((spec.candidate, candidate_metrics), (stable, stable_metrics)):
            why = self._predictions(spec.model, version) if needed else ""
            if why:
                blind.append(why)
                metrics += [m.value for m in needed if m.value not in metrics]
        if blind:
            raise ConfigError(
                f"rollout: model {spec.model!r}: gates on {', '.join(metrics)} judge "
                f"predictions, and {'; '.join(blind)}; set its output_path (a JSONPath to "
                "the prediction in its answers, e.g. $.predictions[*]) or gate on "
                "error_rate, client_error_rate and latency only"
            )

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
                replacing = rollout_row(current, ended.status, now)
                events += decision_events(ended, spec.model, current.id, now)
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
        started = decision_events(decision, spec.model, None, now)
        stored = self.store.start_rollout(
            row,
            events + started + self._allowed_change(spec, stable, actor, now),
            plan_routing(decision.routing, spec.model, routing.salt),
            replacing=replacing,
        )
        # The new rollout's id is known only now that it is stored.
        named = [dataclasses.replace(e, data={**e.data, "rollout": stored.id}) for e in started]
        self._notify(events + named)
        return load(stored)

    def _allowed_change(
        self, spec: RolloutSpec, stable: str, actor: str, now: float
    ) -> list[Event]:
        """The interface change a spec allowed, recorded with the rollout's start."""
        diff = self._diff(spec, stable) if spec.allow_interface_change else None
        if diff is None or not diff.breaking:
            return []
        return [
            Event(
                model=spec.model,
                kind="rollout.interface_change_allowed",
                message=f"{spec.candidate} changes the interface of {stable}, as the spec "
                f"allows: {'; '.join(d.text() for d in diff.breaking)}",
                data={**diff.to_dict(), "rollout": None},
                at_s=now,
                actor=actor,
            )
        ]

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
            events = decision_events(decision, model, rollout.id, now)
            try:
                saved = self.store.save_rollout(
                    rollout_row(rollout.row, decision.status, now),
                    expected_revision=rollout.row.revision,
                    routing=plan_routing(decision.routing, model, self._salt(model)),
                    events=events,
                )
            except Conflict:
                if self.store.get_rollout(rollout.id) is None:
                    raise
                continue
            self._notify(events)
            return load(saved)
        raise Conflict(f"the rollout of {model!r} kept changing; try again")
