"""Pure rules of the fleet of gateway replicas.

Which replicas are live, whether a version is loaded on every live one (and so whether
a rollout may give it traffic), whether a version may be retired or let go from memory,
and which versions a replica should load. No I/O and no clock: the store supplies the
replicas and their load states, the caller supplies ``now_s``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from rollwise.domain import (
    Replica,
    ReplicaVersion,
    Routing,
    VersionHealth,
    VersionSpec,
)
from rollwise.rollout.status import Phase, RolloutStatus

__all__ = [
    "CandidateVerdict",
    "FleetReadiness",
    "LoadPlan",
    "VersionKey",
    "candidate_verdict",
    "due_for_unload",
    "fleet_readiness",
    "plan_loads",
    "replica_live",
    "retire_refusal",
]

VersionKey = tuple[str, str]
"""``(model, version)``."""

MAX_ERROR_CHARS = 300
"""A replica's load error is cut to this length in readiness messages: a traceback-sized
error would swamp the event or the API answer that quotes it."""


def replica_live(replica: Replica, now_s: float, timeout_s: float) -> bool:
    """Whether ``replica`` is part of the fleet at ``now_s``: it has not said goodbye and
    its last heartbeat is at most ``timeout_s`` old."""
    return not replica.stopped and replica.last_seen_s >= now_s - timeout_s


# -- readiness of one version across the fleet ---------------------------------------------


def _one_line(error: str) -> str:
    text = " ".join(error.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True)
class FleetReadiness:
    """Where one version of one model stands on each live replica.

    Every live replica is in exactly one of ``ready``, ``loading``, ``failed`` (with its
    error) and ``missing`` (it reports nothing for the version, or has unloaded it).
    Replica ids are sorted.
    """

    model: str
    version: str
    live: tuple[str, ...] = ()
    ready: tuple[str, ...] = ()
    loading: tuple[str, ...] = ()
    failed: Mapping[str, str] = field(default_factory=dict)
    missing: tuple[str, ...] = ()

    @property
    def everywhere(self) -> bool:
        """At least one replica is live and every live one has the version ready."""
        return bool(self.live) and set(self.live) <= set(self.ready)

    @property
    def failed_anywhere(self) -> bool:
        return bool(self.failed)

    def summary(self) -> str:
        """E.g. ``ready on 2/3 replicas``, or ``no live replica``."""
        if not self.live:
            return "no live replica"
        ready = len(set(self.ready) & set(self.live))
        noun = "replica" if len(self.live) == 1 else "replicas"
        return f"ready on {ready}/{len(self.live)} {noun}"

    def why_not(self) -> str:
        """The replicas that hold the version back, e.g. ``not ready on replica gw-b
        (failed: cannot read iris-v4.onnx); loading on gw-c``; empty when it is ready
        everywhere."""
        if not self.live:
            return "no live replica"
        parts = [
            f"not ready on replica {replica} (failed: {_one_line(error)})"
            if error.strip()
            else f"not ready on replica {replica} (failed)"
            for replica, error in sorted(self.failed.items())
        ]
        if self.loading:
            parts.append(f"loading on {', '.join(self.loading)}")
        if self.missing:
            parts.append(f"not loaded on {', '.join(self.missing)}")
        return "; ".join(parts)


def fleet_readiness(
    model: str,
    version: str,
    replicas: Sequence[Replica],
    states: Sequence[ReplicaVersion],
    now_s: float,
    timeout_s: float,
) -> FleetReadiness:
    """Where ``version`` of ``model`` stands on the replicas live at ``now_s``.

    States of replicas that are not live are ignored: a dead replica neither holds a
    rollout back nor vouches for a version. When a replica reports the version twice, the
    latest report (by ``updated_at_s``, then by position) counts.
    """
    live = sorted({r.id for r in replicas if replica_live(r, now_s, timeout_s)})
    live_set = set(live)
    latest: dict[str, ReplicaVersion] = {}
    for state in states:
        if state.model != model or state.version != version or state.replica not in live_set:
            continue
        seen = latest.get(state.replica)
        if seen is None or state.updated_at_s >= seen.updated_at_s:
            latest[state.replica] = state
    ready: list[str] = []
    loading: list[str] = []
    failed: dict[str, str] = {}
    missing: list[str] = []
    for replica in live:
        report = latest.get(replica)
        health = report.health if report is not None else VersionHealth.UNLOADED
        if health is VersionHealth.READY:
            ready.append(replica)
        elif health is VersionHealth.LOADING:
            loading.append(replica)
        elif health is VersionHealth.FAILED and report is not None:
            failed[replica] = report.error
        else:
            missing.append(replica)
    return FleetReadiness(
        model=model,
        version=version,
        live=tuple(live),
        ready=tuple(ready),
        loading=tuple(loading),
        failed=failed,
        missing=tuple(missing),
    )


class CandidateVerdict(StrEnum):
    """What the fleet's readiness means for a rollout's candidate."""

    READY = "ready"
    """Loaded on every live replica: its share may be raised."""
    WAIT = "wait"
    """Still loading somewhere (or no replica is live): never raise its share."""
    FAILED = "failed"
    """A live replica could not load it: the rollout ends as failed."""


def candidate_verdict(readiness: FleetReadiness) -> tuple[CandidateVerdict, str]:
    """The verdict on a rollout's candidate, with the reason in one sentence."""
    name = f"version {readiness.version!r} of model {readiness.model!r}"
    if readiness.failed:
        where = "; ".join(
            f"on replica {replica}: {_one_line(error) or 'no error given'}"
            for replica, error in sorted(readiness.failed.items())
        )
        return CandidateVerdict.FAILED, f"{name} failed to load {where}"
    if not readiness.live:
        return (
            CandidateVerdict.WAIT,
            f"waiting for {name} to load: no live replica (no recent heartbeat)",
        )
    if not readiness.everywhere:
        return (
            CandidateVerdict.WAIT,
            f"waiting for {name} to load on every replica: {readiness.summary()}; "
            f"{readiness.why_not()}",
        )
    return CandidateVerdict.READY, f"{name} is {readiness.summary()}"


# -- retiring and unloading ----------------------------------------------------------------


def _check_model(model: str, routing: Routing | None, latest: RolloutStatus | None) -> None:
    # Judging a version against another model's routing or rollout would let it go while
    # its own model still needs it: a caller's bug, refused loudly.
    if routing is not None and routing.model != model:
        raise ValueError(f"routing of model {routing.model!r} given for model {model!r}")
    if latest is not None and latest.model != model:
        raise ValueError(f"rollout of model {latest.model!r} given for model {model!r}")


def retire_refusal(
    model: str,
    version: str,
    routing: Routing | None,
    latest: RolloutStatus | None,
    now_s: float,
) -> str | None:
    """Why ``version`` of ``model`` may not be retired now, or None when it may.

    ``routing`` is the model's current routing and ``latest`` its latest rollout (either
    may be None). Raises ``ValueError`` when either belongs to another model.
    """
    _check_model(model, routing, latest)
    name = f"version {version!r} of model {model!r} cannot be retired"
    # The rollout comes first: while it runs it owns the routing, so "set its weight to
    # 0" would be undone at the next tick; the useful advice is about the rollout.
    if latest is not None and latest.phase.active and version in (latest.stable, latest.candidate):
        role = "candidate" if version == latest.candidate else "stable version"
        return (
            f"{name}: it is the {role} in the rollout in progress; "
            "wait for the rollout to end, or abort it first"
        )
    if routing is not None:
        if routing.stable == version:
            return (
                f"{name}: it is the model's stable version; make another version stable "
                "first (promote a rollout to it, or route all traffic to it)"
            )
        weight = routing.weight_of(version)
        if weight > 0:
            return (
                f"{name}: it has {weight} % of traffic; route its traffic to other versions first"
            )
        mirror = routing.mirrors.get(version, 0)
        if mirror > 0:
            return (
                f"{name}: it is mirrored ({mirror} % of requests are copied to it); "
                "stop mirroring it first"
            )
    if (
        latest is not None
        and latest.phase is Phase.PROMOTED
        and latest.previous_stable == version
        and latest.keep_previous_until_s is not None
        and now_s < latest.keep_previous_until_s
    ):
        left = math.ceil(latest.keep_previous_until_s - now_s)
        return (
            f"{name}: it is the rollback target of the last promotion until {left} s from "
            "now (keep_previous_s); wait until then, a rollback needs it loaded"
        )
    return None


def due_for_unload(
    routing: Routing | None, latest: RolloutStatus | None, now_s: float
) -> str | None:
    """The version that may now leave memory after a promotion, or None.

    That is the previous stable version of a promoted rollout once ``keep_previous_s``
    has passed, provided the routing gives it no traffic, mirrors nothing to it and does
    not anchor on it. With no routing nothing is unloaded: without it, nothing shows that
    the version serves nobody.
    """
    if routing is None or latest is None:
        return None
    _check_model(latest.model, routing, latest)
    previous = latest.previous_stable
    if (
        latest.phase is not Phase.PROMOTED
        or not previous
        or latest.keep_previous_until_s is None
        or now_s < latest.keep_previous_until_s
    ):
        return None
    if (
        routing.stable == previous
        or routing.weight_of(previous) > 0
        or routing.mirrors.get(previous, 0) > 0
    ):
        return None
    return previous


# -- what a replica should load ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What a replica does to go from what it holds to what it should hold; keys sorted."""

    load: list[VersionKey] = field(default_factory=list)
    unload: list[VersionKey] = field(default_factory=list)
    replace: list[VersionKey] = field(default_factory=list)
    """Held under the same key with a different spec (a config-managed version whose
    spec changed): load the new spec, then drop the old one."""

    @property
    def empty(self) -> bool:
        return not (self.load or self.unload or self.replace)


def plan_loads(
    desired: Mapping[VersionKey, VersionSpec], loaded: Mapping[VersionKey, VersionSpec]
) -> LoadPlan:
    """The loads, unloads and replacements that turn ``loaded`` into ``desired``."""
    return LoadPlan(
        load=sorted(key for key in desired if key not in loaded),
        unload=sorted(key for key in loaded if key not in desired),
        replace=sorted(key for key in desired if key in loaded and loaded[key] != desired[key]),
    )
