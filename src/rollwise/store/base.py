"""The store contract: everything rollwise persists, behind one interface.

SQLite (one machine) and PostgreSQL (many replicas) implement it alike. Methods are
synchronous; async callers run them in a worker thread. A write of state and the event
that explains it happens in one transaction, so a half-applied change never exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rollwise.domain import Event, ModelSpec, Role, Routing


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

    def set_routing(self, routing: Routing, event: Event) -> Event:
        """Replace a model's routing and append its event in one transaction."""

    def state_version(self) -> int:
        """A counter bumped by every routing write, so replicas can poll cheaply."""

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
