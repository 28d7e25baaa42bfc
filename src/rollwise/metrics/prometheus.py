"""Prometheus exposition of the gateway's metrics, built at scrape time from the totals."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from rollwise.metrics.recorder import MetricKey, VersionWindow

# Prometheus buckets (seconds), coarser than the internal log-spaced histogram.
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class GatewayCollector(Collector):
    def __init__(
        self,
        totals: Callable[[], Iterable[tuple[MetricKey, VersionWindow]]],
        weights: Callable[[], Mapping[tuple[str, str], tuple[int, int, bool]]],
        fallbacks: Callable[[], Mapping[tuple[str, str], int]] = dict,
        dropped_predictions: Callable[[], int] = int,
    ) -> None:
        self._totals = totals
        self._weights = weights
        self._fallbacks = fallbacks
        self._dropped_predictions = dropped_predictions

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
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
        yield from (
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
        )
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
        yield from (weight, mirror, ready, fallback)
        # The name gets its "_total" suffix from the exposition format.
        yield CounterMetricFamily(
            "rollwise_predictions_dropped",
            "Logged predictions dropped unwritten because the store did not take them "
            "in time (their feedback answers 404)",
            value=self._dropped_predictions(),
        )


def render(collector: Collector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return bytes(generate_latest(registry))
