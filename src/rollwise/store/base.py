"""The store contract: everything rollwise persists, behind one interface.

SQLite (one machine) and PostgreSQL (many replicas) implement it alike. Methods are
synchronous; async callers run them in a worker thread. A write of state and the event
that explains it happens in one transaction, so a half-applied change never exists.

Rollouts are kept as JSON blobs (spec and status) beside a phase and a revision: the
store enforces only what needs the database to hold (one rollout in progress per model,
optimistic concurrency, the controller's lease), and leaves the rollout logic to
``rollwise.rollout``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rollwise.domain import Event, ModelSpec, Role, Routing

ACTIVE_PHASES = ("pending", "progressing", "paused")
"""Phases of a rollout in progress: a model has at most one rollout in one of them, and
while it has one, its routing belongs to that rollout."""


@dataclass(frozen=True, slots=True)
class RolloutRow:
    """One rollout as stored: its spec and status are JSON, owned by ``rollwise.rollout``.

    ``revision`` counts the writes (1 after insert, +1 per save), so that two writers
    that read the same revision cannot both save over it.
    """

    model: str
    phase: str
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    created_at_s: float
    updated_at_s: float
    revision: int = 0
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """Who may run a singleton loop (the rollout controller) until when.

    ``epoch`` grows by one every time the lease changes holder and never goes back, so
    it is a fencing token: a write that names an older epoch comes from a holder that
    lost the lease, and is refused.
    """

    name: str
    holder: str
    expires_at_s: float
    epoch: int


@dataclass(frozen=True, slots=True)
class MetricBucketRow:
    """What one replica measured for one (model, version, role) during one time bucket.

    ``payload`` is a mergeable summary (counters and histogram counts, see
    ``rollwise.metrics``): rows of the same key are summed to merge replicas and time.
    """

    model: str
    version: str
    role: Role
    start_s: int
    width_s: int
    replica: str
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """What one version answered to one request, kept so that feedback can be joined."""

    request_id: str
    model: str
    version: str
    role: Role
    outputs: Sequence[Any]
    at_s: float


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    request_id: str
    model: str
    label: Any
    at_s: float


@dataclass(frozen=True, slots=True)
class StoredVersion:
    model: str
    name: str
    backend: str
    options: Mapping[str, Any] = field(default_factory=dict)


class Store(Protocol):
    url: str

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest revision (idempotent)."""

    def close(self) -> None: ...

    # models and versions -------------------------------------------------------------
    def sync_models(self, models: Sequence[ModelSpec], now_s: float) -> list[Event]:
        """Record the configured models and versions; give each model without stored
        routing (or whose stored routing names a version no longer configured) 100 % on
        its stable version. Returns the events written."""

    def list_versions(self, model: str | None = None) -> list[StoredVersion]: ...

    # routing ------------------------------------------------------------------------
    def get_routing(self, model: str) -> Routing | None: ...

    def list_routings(self) -> list[Routing]: ...

    def set_routing(self, routing: Routing, event: Event, *, force: bool = False) -> Event:
        """Replace a model's routing and append its event in one transaction.

        Refused with ``Conflict`` while the model has a rollout in progress, whose
        controller owns the routing, unless ``force``."""

    def state_version(self) -> int:
        """A counter bumped by every routing write, so replicas can poll cheaply."""

    # rollouts -----------------------------------------------------------------------
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

    # leases -------------------------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, now_s: float, ttl_s: float) -> Lease | None:
        """Take the lease if it is free, expired or already ``holder``'s, until
        ``now_s + ttl_s``; None when someone else holds it. Atomic across processes."""

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up, if ``holder`` holds it."""

    def get_lease(self, name: str) -> Lease | None:
        """The lease as stored, possibly expired; None when nobody holds it."""

    # events -------------------------------------------------------------------------
    def add_event(self, event: Event) -> Event: ...

    def list_events(
        self, model: str | None = None, after_id: int = 0, limit: int = 100, latest: bool = False
    ) -> list[Event]:
        """Events with id > after_id, oldest first, at most ``limit`` (the newest
        ``limit`` of them with ``latest``)."""

    # metrics ------------------------------------------------------------------------
    def write_metric_buckets(self, rows: Sequence[MetricBucketRow]) -> None: ...

    def read_metric_buckets(
        self,
        model: str,
        since_s: float,
        until_s: float | None = None,
        version: str | None = None,
        role: Role | None = None,
    ) -> list[MetricBucketRow]:
        """Rows with since_s <= start_s < until_s, oldest first."""

    def prune_metric_buckets(self, older_than_s: float) -> int: ...

    # predictions and feedback -------------------------------------------------------
    def log_predictions(self, records: Sequence[PredictionRecord]) -> None: ...

    def get_predictions(self, request_id: str) -> list[PredictionRecord]:
        """Every version's answer to one request (served first, then shadows)."""

    def prune_predictions(self, older_than_s: float) -> int: ...

    def prune_feedback(self, older_than_s: float) -> int:
        """Forget labels recorded before ``older_than_s``; returns how many."""

    def record_feedback(self, feedback: FeedbackRecord) -> bool:
        """Store a label once; False when the request already has feedback."""

    def get_feedback(self, request_id: str) -> FeedbackRecord | None: ...
