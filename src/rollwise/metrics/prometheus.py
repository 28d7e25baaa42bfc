"""Prometheus exposition of the gateway's metrics, built at scrape time from the totals.

Every figure is this process's own. A gateway alone is its own scrape target, so its
series carry no label naming it (the target's ``instance`` does). The workers of
``serve --workers N`` share one port, so one target: a scrape reaches whichever worker
accepts the connection, and an exposition without a label naming the worker would
interleave N processes' counters in one series, each switch read by ``rate()`` as a
counter reset. Their collectors are given ``Replica(label_series=True)``: every series
carries ``replica``, the worker's id in the fleet (as ``/api/v1/replicas`` lists it).
``rollwise_replica_info{replica, pid}`` says in every case which process answered. The
fleet-wide figures, summed over every replica from the store, are the status API's
(``/api/v1/models/{m}``), not /metrics'.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from rollwise.metrics.llm_prometheus import llm_families
from rollwise.metrics.recorder import MetricKey, VersionWindow

# Prometheus buckets (seconds), coarser than the internal log-spaced histogram.
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


REPLICA_LABEL = "replica"


class GcRecord(Protocol):
    """The garbage collector's pauses, per generation (0, 1, 2), since timing began: as
    ``rollwise.server.gc_policy.GcPauses`` keeps them (metrics cannot import server)."""

    @property
    def passes(self) -> Sequence[int]: ...

    @property
    def seconds(self) -> Sequence[float]: ...

    @property
    def longest_s(self) -> Sequence[float]: ...


class DeliveryCounts(Protocol):
    """One notification target's deliveries so far (``rollwise.notifications.Counts``)."""

    @property
    def target(self) -> str: ...

    @property
    def sent(self) -> int: ...

    @property
    def failed(self) -> int: ...

    @property
    def dropped(self) -> int: ...

    @property
    def queued(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Replica:
    """The process a scrape reaches: its id in the fleet and its pid; ``label_series``
    when it shares its scrape target with others (a worker of ``serve --workers N``)."""

    id: str
    pid: int
    label_series: bool = False


class GatewayCollector(Collector):
    def __init__(
        self,
        totals: Callable[[], Iterable[tuple[MetricKey, VersionWindow]]],
        weights: Callable[[], Mapping[tuple[str, str], tuple[int, int, bool]]],
        fallbacks: Callable[[], Mapping[tuple[str, str], int]] = dict,
        dropped_predictions: Callable[[], int] = int,
        *,
        gc_pauses: Callable[[], GcRecord] | None = None,
        replica: Replica | None = None,
        notifications: Callable[[], Iterable[DeliveryCounts]] | None = None,
    ) -> None:
        self._notifications = notifications
        self._totals = totals
        self._weights = weights
        self._fallbacks = fallbacks
        self._dropped_predictions = dropped_predictions
        self._gc_pauses = gc_pauses
        self._replica = replica

    def collect(self) -> Iterator[Metric]:
        families = [
            *self._traffic(),
            *llm_families(self._totals(), LATENCY_BUCKETS_S),
            *self._routing(),
            self._dropped(),
            *self._gc(),
            *self._notified(),
        ]
        replica = self._replica
        if replica is not None:
            if replica.label_series:
                for family in families:
                    _add_label(family, REPLICA_LABEL, replica.id)
            info = InfoMetricFamily(
                "rollwise_replica",
                "The gateway process that answered this scrape: its replica id in the "
                "fleet and its pid (with serve --workers N, any one of the N)",
                value={REPLICA_LABEL: replica.id, "pid": str(replica.pid)},
            )
            families.append(info)
        yield from families

    def _gc(self) -> list[Metric]:
        if self._gc_pauses is None:
            return []
        record = self._gc_pauses()
        labels = ["generation"]
        seconds = CounterMetricFamily(
            "rollwise_gc_pause_seconds",
            "Time the garbage collector's passes stopped this process, per generation",
            labels=labels,
        )
        passes = CounterMetricFamily(
            "rollwise_gc_passes", "Garbage collector passes, per generation", labels=labels
        )
        longest = GaugeMetricFamily(
            "rollwise_gc_longest_pause_seconds",
            "Longest single pass of the garbage collector since the process started serving",
            labels=labels,
        )
        for generation, (count, total, most) in enumerate(
            zip(record.passes, record.seconds, record.longest_s, strict=True)
        ):
            values = [str(generation)]
            passes.add_metric(values, count)
            seconds.add_metric(values, total)
            longest.add_metric(values, most)
        return [seconds, passes, longest]

    def _traffic(self) -> list[Metric]:
        labels = ["model", "version", "role"]
        requests = CounterMetricFamily(
            "rollwise_requests",
            "Requests sent to the version: answered, failed or refused",
            labels=labels,
        )
        errors = CounterMetricFamily(
            "rollwise_errors", "Requests failed by the version", labels=labels
        )
        timeouts = CounterMetricFamily("rollwise_timeouts", "Requests timed out", labels=labels)
        client_errors = CounterMetricFamily(
            "rollwise_client_errors",
            "Requests the version refused as bad input (not counted in rollwise_errors)",
            labels=labels,
        )
        compared = CounterMetricFamily(
            "rollwise_shadow_compared",
            "Shadow answers compared with the served answer",
            labels=labels,
        )
        agreed = CounterMetricFamily(
            "rollwise_shadow_agreed", "Shadow answers equal to the served answer", labels=labels
        )
        dropped = CounterMetricFamily(
            "rollwise_mirror_dropped",
            "Mirrored requests the shadow version dropped unanswered: it already held "
            "server.mirror_concurrency of them, was unloaded, or the gateway stopped",
            labels=labels,
        )
        feedback = CounterMetricFamily(
            "rollwise_feedback", "Labels joined to predictions", labels=labels
        )
        correct = CounterMetricFamily(
            "rollwise_feedback_correct", "Correct predictions", labels=labels
        )
        latency = HistogramMetricFamily(
            "rollwise_request_duration_seconds", "Time the version took to answer", labels=labels
        )
        for (model, version, role), window in self._totals():
            values = [model, version, role.value]
            requests.add_metric(values, window.requests)
            errors.add_metric(values, window.errors)
            timeouts.add_metric(values, window.timeouts)
            client_errors.add_metric(values, window.client_errors)
            compared.add_metric(values, window.compared)
            agreed.add_metric(values, window.agreed)
            dropped.add_metric(values, window.dropped)
            feedback.add_metric(values, window.feedback)
            correct.add_metric(values, window.correct)
            count = window.latency_ms.count
            buckets = [
                (
                    str(bound),
                    float(round(window.latency_ms.cdf(bound * 1000.0) * count)) if count else 0.0,
                )
                for bound in LATENCY_BUCKETS_S
            ]
            buckets.append(("+Inf", float(window.latency_ms.count)))
            latency.add_metric(values, buckets, window.latency_sum_ms / 1000.0)
        return [
            requests,
            errors,
            timeouts,
            client_errors,
            compared,
            agreed,
            dropped,
            feedback,
            correct,
            latency,
        ]

    def _routing(self) -> list[Metric]:
        weight = GaugeMetricFamily(
            "rollwise_routing_weight",
            "Percent of traffic routed to the version",
            labels=["model", "version"],
        )
        mirror = GaugeMetricFamily(
            "rollwise_mirror_percent",
            "Percent of requests mirrored to the version",
            labels=["model", "version"],
        )
        ready = GaugeMetricFamily(
            "rollwise_version_ready",
            "1 when the version is loaded and ready",
            labels=["model", "version"],
        )
        for (model, version), (percent, mirrored, is_ready) in sorted(self._weights().items()):
            weight.add_metric([model, version], percent)
            mirror.add_metric([model, version], mirrored)
            ready.add_metric([model, version], 1.0 if is_ready else 0.0)
        fallback = CounterMetricFamily(
            "rollwise_unready_fallback",
            "Requests routed to a version not ready in this replica, answered by the anchor",
            labels=["model", "version"],
        )
        for (model, version), count in sorted(self._fallbacks().items()):
            fallback.add_metric([model, version], count)
        return [weight, mirror, ready, fallback]

    def _dropped(self) -> Metric:
        # The name gets its "_total" suffix from the exposition format.
        return CounterMetricFamily(
            "rollwise_predictions_dropped",
            "Logged predictions dropped unwritten because the store did not take them "
            "in time (their feedback answers 404)",
            value=self._dropped_predictions(),
        )

    def _notified(self) -> list[Metric]:
        if self._notifications is None:
            return []
        labels = ["target"]
        sent = CounterMetricFamily(
            "rollwise_notifications_sent",
            "Rollout event notifications a target answered 2xx to",
            labels=labels,
        )
        failed = CounterMetricFamily(
            "rollwise_notifications_failed",
            "Notifications given up on after every retry (error, non-2xx answer or timeout)",
            labels=labels,
        )
        dropped = CounterMetricFamily(
            "rollwise_notifications_dropped",
            "Notifications dropped unsent because the target's queue was full (oldest first)",
            labels=labels,
        )
        queued = GaugeMetricFamily(
            "rollwise_notifications_queued",
            "Notifications waiting for their target",
            labels=labels,
        )
        for counts in self._notifications():
            sent.add_metric([counts.target], counts.sent)
            failed.add_metric([counts.target], counts.failed)
            dropped.add_metric([counts.target], counts.dropped)
            queued.add_metric([counts.target], counts.queued)
        return [sent, failed, dropped, queued]


def _add_label(family: Metric, name: str, value: str) -> None:
    """Give every sample of ``family`` the label ``name=value`` (families build their
    samples from their own label names, so a label common to all is added after)."""
    family.samples = [
        sample._replace(labels={**sample.labels, name: value}) for sample in family.samples
    ]


def render(collector: Collector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return bytes(generate_latest(registry))
