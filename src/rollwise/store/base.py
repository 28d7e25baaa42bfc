"""The store contract: everything rollwise persists, behind narrow interfaces.

SQLite (one machine) and PostgreSQL (many replicas) implement it alike. Methods are
synchronous; async callers run them in a worker thread. A write of state and the event
that explains it happens in one transaction, so a half-applied change never exists.

Each aggregate has its own protocol (``CatalogStore``, ``RoutingStore``,
``RolloutStore``, ``LeaseStore``, ``EventStore``, ``MetricsStore``,
``PredictionStore``, ``FleetStore``), so that a component can say which part of the
store it needs; ``Store`` is all of them together.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from rollwise.domain import (
    Event,
    ModelSpec,
    RegisteredVersion,
    Replica,
    ReplicaVersion,
    Role,
    Routing,
)
from rollwise.store.records import (
    ACTIVE_PHASES,
    FeedbackRecord,
    Lease,
    MetricBucketRow,
    PredictionRecord,
    RetireRefusal,
    RolloutRow,
)

__all__ = [
    "ACTIVE_PHASES",
    "CatalogStore",
    "EventStore",
    "FeedbackRecord",
    "FleetStore",
    "Lease",
    "LeaseStore",
    "MetricBucketRow",
    "MetricsStore",
    "PredictionRecord",
    "PredictionStore",
    "RetireRefusal",
    "RolloutRow",
    "RolloutStore",
    "RoutingStore",
    "StateStore",
    "Store",
]


class StateStore(Protocol):
    """The one counter that tells replicas their copy of the catalog or routing is old."""

    def state_version(self) -> int:
        """A counter bumped by every write of routing or of the catalog, so that
        replicas can poll one number cheaply to learn that they must re-read."""


class CatalogStore(StateStore, Protocol):
    """Models and their versions, as every replica of the fleet loads them.

    A version is managed by the config (``sync_models``) or by the control API
    (``register_version``, ``create_model``), never both; API versions are immutable
    once registered. Every change bumps the state counter and, except the config sync,
    writes its event in the same transaction.
    """

    def list_models(self) -> list[ModelSpec]:
        """Every stored model, by name, with all its versions (config and API)."""

    def list_versions(self, model: str | None = None) -> list[RegisteredVersion]:
        """Versions by model, then name."""

    def get_version(self, model: str, name: str) -> RegisteredVersion | None: ...

    def register_version(
        self, version: RegisteredVersion, event: Event
    ) -> tuple[RegisteredVersion, bool]:
        """Record a new version of a stored model; ``(stored, True)`` when written.

        Registering the same spec again (equal ``spec_sha256``) changes nothing and
        returns ``(stored, False)``; a different spec under a registered name is a
        ``Conflict``; an unknown model is ``NotFound``. An empty ``spec_sha256`` is
        filled in with ``jsontext.spec_fingerprint`` of the backend and ``requested``
        (or the options, when nothing was requested)."""

    def retire_version(
        self, model: str, name: str, event: Event, refusal: RetireRefusal
    ) -> RegisteredVersion:
        """Delete an API-managed version and its replicas' load states; returns it.

        ``NotFound`` when absent; ``Conflict`` for a config-managed version, or with
        the reason ``refusal`` gives (asked with the routing and latest rollout as they
        stand inside the transaction), and then nothing is written."""

    def set_keep_loaded(self, model: str, name: str, keep: bool, event: Event) -> bool:
        """Set whether replicas keep the version in memory; False when it already was."""

    def create_model(
        self,
        model: ModelSpec,
        versions: Sequence[RegisteredVersion],
        event: Event,
        now_s: float,
    ) -> bool:
        """Create an API-managed model with ``versions`` (its stable among them) and
        100 % of its traffic on the stable version; True when written.

        False, with nothing written, when the model exists already as asked; a
        ``Conflict`` saying what differs when it exists otherwise."""

    def sync_models(self, models: Sequence[ModelSpec], now_s: float) -> list[Event]:
        """Record the configured models and their config-managed versions, and give
        each model without stored routing (or whose routing names a version that no
        longer exists) routing on its stable version. Returns the events written.

        A config version removed from the config is deleted, unless it still serves
        traffic: then ``ConfigError`` and nothing is written. API-managed versions are
        never touched; a config version named like one is a ``ConfigError``."""


class RoutingStore(StateStore, Protocol):
    """Each model's routing: the split of its traffic between its versions."""

    def get_routing(self, model: str) -> Routing | None: ...

    def list_routings(self) -> list[Routing]: ...

    def set_routing(self, routing: Routing, event: Event, *, force: bool = False) -> Event:
        """Replace a model's routing and append its event in one transaction.

        Refused with ``Conflict`` while the model has a rollout in progress, whose
        controller owns the routing, unless ``force``."""


class RolloutStore(Protocol):
    """Rollouts, one in progress per model at a time, saved with optimistic concurrency."""

    def start_rollout(
        self,
        row: RolloutRow,
        events: Sequence[Event],
        routing: Routing | None = None,
        *,
        replacing: RolloutRow | None = None,
    ) -> RolloutRow:
        """Insert a new rollout (revision 1) with its routing and events, in one
        transaction. ``Conflict`` when the model already has a rollout in progress,
        unless ``replacing`` is that rollout at its stored revision, carrying the
        (inactive) phase and status to save it with. ``NotFound`` for an unknown model.
        Returns the row with its id."""

    def save_rollout(
        self,
        row: RolloutRow,
        *,
        expected_revision: int,
        routing: Routing | None = None,
        events: Sequence[Event] = (),
        lease: tuple[str, str, int] | None = None,
    ) -> RolloutRow:
        """Save ``row``'s phase, status and updated_at_s, with routing and events, in
        one transaction, if it is still at ``expected_revision`` and, when ``lease``
        (name, holder, epoch) is given, that lease is still held at that epoch; else
        ``Conflict`` and nothing is written. Returns the row at its new revision."""

    def get_rollout(self, rollout_id: int) -> RolloutRow | None: ...

    def latest_rollout(self, model: str) -> RolloutRow | None:
        """The model's newest rollout, whatever its phase."""

    def list_rollouts(
        self, model: str | None = None, *, active_only: bool = False, limit: int | None = 100
    ) -> list[RolloutRow]:
        """Rollouts newest first, at most ``limit`` (None: all)."""


class LeaseStore(Protocol):
    """Leases with fencing epochs, so that one controller runs in the whole fleet."""

    def acquire_lease(self, name: str, holder: str, now_s: float, ttl_s: float) -> Lease | None:
        """Take the lease if it is free, expired or already ``holder``'s, until
        ``now_s + ttl_s``; None when someone else holds it. Atomic across processes."""

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up, if ``holder`` holds it."""

    def get_lease(self, name: str) -> Lease | None:
        """The lease as stored, possibly expired; None when nobody holds it."""


class EventStore(Protocol):
    """The append-only log of changes and their reasons, paged by id."""

    def add_event(self, event: Event) -> Event: ...

    def list_events(
        self, model: str | None = None, after_id: int = 0, limit: int = 100, latest: bool = False
    ) -> list[Event]:
        """Events with id > after_id, oldest first, at most ``limit`` (the newest
        ``limit`` of them with ``latest``)."""


class MetricsStore(Protocol):
    """Mergeable metric buckets, one row per replica, version, role and time bucket,
    and one per second of the predictions that labels arrived late for."""

    def write_metric_buckets(self, rows: Sequence[MetricBucketRow]) -> None: ...

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

    def prune_metric_buckets(self, older_than_s: float) -> int: ...


class PredictionStore(Protocol):
    """Predictions and the feedback joined to them."""

    def log_predictions(self, records: Collection[PredictionRecord]) -> None:
        """Log answers for feedback to find; ``records`` is iterated once."""

    def get_predictions(self, request_id: str) -> list[PredictionRecord]:
        """Every version's answer to one request (served first, then shadows)."""

    def prune_predictions(self, older_than_s: float) -> int: ...

    def prune_feedback(self, older_than_s: float) -> int:
        """Forget labels recorded before ``older_than_s``; returns how many."""

    def record_feedback(self, feedback: FeedbackRecord) -> bool:
        """Store a label once; False when the request already has feedback."""

    def get_feedback(self, request_id: str) -> FeedbackRecord | None: ...


class FleetStore(Protocol):
    """The gateway replicas and the load state of each version in each of them.

    None of these writes bumps the state counter: heartbeats come every second from
    every replica, and readers of the fleet poll it on their own schedule.
    """

    def heartbeat(self, replica: Replica) -> None:
        """Record that ``replica`` is alive (and no longer stopped)."""

    def replica_stopped(self, replica_id: str, now_s: float) -> None:
        """Mark the replica stopped at ``now_s`` and forget its load states; it stays
        listed until pruned. Unknown replicas are ignored."""

    def report_versions(self, replica_id: str, states: Sequence[ReplicaVersion]) -> None:
        """Replace the replica's whole set of load states with ``states``.

        ``NotFound`` for a replica that never sent a heartbeat (or was pruned)."""

    def list_replicas(self) -> list[Replica]:
        """Every recorded replica, oldest start first."""

    def list_replica_versions(self, model: str | None = None) -> list[ReplicaVersion]:
        """Load states by model, version, then replica."""

    def prune_replicas(self, older_than_s: float) -> int:
        """Forget replicas last seen before ``older_than_s`` with their load states;
        returns how many replicas."""


class Store(
    CatalogStore,
    RoutingStore,
    RolloutStore,
    LeaseStore,
    EventStore,
    MetricsStore,
    PredictionStore,
    FleetStore,
    Protocol,
):
    """The whole store, as ``open_store`` returns it."""

    url: str

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest revision (idempotent)."""

    def close(self) -> None: ...
