"""The store's own records: what it keeps that is not a domain value.

Rollouts are kept as JSON blobs (spec and status) beside a phase and a revision: the
store enforces only what needs the database to hold (one rollout in progress per model,
optimistic concurrency, the controller's lease), and leaves the rollout logic to
``rollwise.rollout``. Metrics, predictions and feedback are the gateway's telemetry as
rows. Catalog and fleet values (``RegisteredVersion``, ``Replica``, ``ReplicaVersion``)
live in ``rollwise.domain`` because the pure fleet rules read them too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rollwise.domain import Role, Routing

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

    ``predicted_s`` marks a bucket of late labels: the feedback figures of labels that
    arrived during the bucket for predictions made during that earlier second. Such a
    bucket counts toward the data of the second its predictions were made, so that a
    label is judged with the weights its prediction was made under (see ``measured_s``).
    """

    model: str
    version: str
    role: Role
    start_s: int
    width_s: int
    replica: str
    payload: Mapping[str, Any]
    predicted_s: int | None = None

    @property
    def measured_s(self) -> int:
        """The second the figures belong to: when the predictions of late labels were
        made, else the bucket's start. "Data since T" is the rows with this >= T."""
        return self.start_s if self.predicted_s is None else self.predicted_s


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
    """The ground truth posted for one request, recorded once."""

    request_id: str
    model: str
    label: Any
    at_s: float


RetireRefusal = Callable[[Routing | None, RolloutRow | None], str | None]
"""Asked by ``retire_version`` with the model's routing and latest rollout, read inside
the retiring transaction: a reason to refuse, or None to go ahead."""
