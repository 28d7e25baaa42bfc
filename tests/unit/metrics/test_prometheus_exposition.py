"""/metrics as the collector writes it: the garbage collector's pauses per generation,
and which process answered, with every series labelled by its replica only when the
process shares its scrape target with other workers."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from rollwise.domain import Role
from rollwise.metrics.prometheus import GatewayCollector, Replica, render
from rollwise.metrics.recorder import MetricKey, VersionWindow
from rollwise.server.gc_policy import GcPauses

WEIGHTS = {("iris", "v1"): (90, 0, True), ("iris", "v2"): (10, 5, False)}


def served_window() -> Iterable[tuple[MetricKey, VersionWindow]]:
    window = VersionWindow()
    window.requests = 7
    window.errors = 1
    key: MetricKey = ("iris", "v1", Role.SERVED)
    return [(key, window)]


def samples(collector: GatewayCollector) -> list[Sample]:
    text = render(collector).decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def only(found: list[Sample], name: str, **labels: str) -> Sample:
    matching = [
        s for s in found if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matching) == 1, (name, labels, matching)
    return matching[0]


def test_gc_pauses_are_exposed_per_generation() -> None:
    pauses = GcPauses(
        passes=[40, 3, 1], seconds=[0.004, 0.0021, 0.0125], longest_s=[0.0002, 0.001, 0.0125]
    )
    found = samples(GatewayCollector(served_window, WEIGHTS.copy, gc_pauses=lambda: pauses))
    for generation in range(3):
        labels = {"generation": str(generation)}
        assert only(found, "rollwise_gc_passes_total", **labels).value == pauses.passes[generation]
        seconds = only(found, "rollwise_gc_pause_seconds_total", **labels).value
        assert seconds == pauses.seconds[generation]
        longest = only(found, "rollwise_gc_longest_pause_seconds", **labels).value
        assert longest == pauses.longest_s[generation]


def test_the_record_is_read_at_each_scrape_not_when_the_collector_is_built() -> None:
    pauses = GcPauses()
    collector = GatewayCollector(served_window, WEIGHTS.copy, gc_pauses=lambda: pauses)
    assert only(samples(collector), "rollwise_gc_passes_total", generation="0").value == 0
    pauses.passes[0] = 5
    pauses.longest_s[2] = 0.25
    found = samples(collector)
    assert only(found, "rollwise_gc_passes_total", generation="0").value == 5
    assert only(found, "rollwise_gc_longest_pause_seconds", generation="2").value == 0.25


def test_without_a_gc_record_no_gc_series_are_written() -> None:
    found = samples(GatewayCollector(served_window, WEIGHTS.copy))
    assert not [s for s in found if s.name.startswith("rollwise_gc_")]


def test_a_lone_gateway_names_itself_in_replica_info_and_leaves_its_series_unlabelled() -> None:
    collector = GatewayCollector(
        served_window,
        WEIGHTS.copy,
        gc_pauses=GcPauses,
        replica=Replica("host-12-ab", 12),
    )
    found = samples(collector)
    info = only(found, "rollwise_replica_info")
    assert info.labels == {"replica": "host-12-ab", "pid": "12"}
    assert info.value == 1
    labelled = [s.name for s in found if "replica" in s.labels and s is not info]
    assert labelled == []
    # The series existing dashboards read keep their exact names and labels.
    text = render(collector).decode()
    assert 'rollwise_requests_total{model="iris",role="served",version="v1"} 7.0' in text


def test_a_worker_labels_every_series_with_its_replica() -> None:
    collector = GatewayCollector(
        served_window,
        WEIGHTS.copy,
        lambda: {("iris", "v2"): 3},
        lambda: 2,
        gc_pauses=GcPauses,
        replica=Replica("host-34-cd", 34, label_series=True),
    )
    found = samples(collector)
    names = {s.name for s in found}
    # Every kind of series is there: traffic, histogram, routing, drops, GC, identity.
    for name in (
        "rollwise_requests_total",
        "rollwise_request_duration_seconds_bucket",
        "rollwise_routing_weight",
        "rollwise_unready_fallback_total",
        "rollwise_predictions_dropped_total",
        "rollwise_gc_passes_total",
        "rollwise_replica_info",
    ):
        assert name in names
    unlabelled = sorted({s.name for s in found if s.labels.get("replica") != "host-34-cd"})
    assert unlabelled == []
    requests = only(found, "rollwise_requests_total", model="iris", version="v1")
    assert requests.value == 7
    assert only(found, "rollwise_replica_info").labels == {"replica": "host-34-cd", "pid": "34"}


def test_without_a_replica_no_info_series_is_written() -> None:
    found = samples(GatewayCollector(served_window, WEIGHTS.copy))
    assert "rollwise_replica_info" not in {s.name for s in found}
