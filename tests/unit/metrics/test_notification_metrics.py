"""/metrics counts each notification target's deliveries, labelled by the target's name
(never its URL), and labels them by replica like every other series when asked."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from rollwise.metrics.prometheus import GatewayCollector, Replica, render
from rollwise.notifications.sender import Counts

COUNTS = [Counts("slack", sent=5, failed=2, dropped=1, queued=3), Counts("log", 9, 0, 0, 0)]


def samples(collector: GatewayCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = render(collector).decode()
    found: list[Sample] = [
        s for family in text_string_to_metric_families(text) for s in family.samples
    ]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in found}


def test_each_target_has_its_sent_failed_dropped_and_queued() -> None:
    found = samples(GatewayCollector(list, dict, notifications=lambda: COUNTS))
    for name, value in [
        ("rollwise_notifications_sent_total", 5),
        ("rollwise_notifications_failed_total", 2),
        ("rollwise_notifications_dropped_total", 1),
        ("rollwise_notifications_queued", 3),
    ]:
        assert found[(name, (("target", "slack"),))] == value
    assert found[("rollwise_notifications_sent_total", (("target", "log"),))] == 9


def test_workers_sharing_a_port_label_them_by_replica() -> None:
    replica = Replica("r1", 10, label_series=True)
    found = samples(GatewayCollector(list, dict, notifications=lambda: COUNTS[:1], replica=replica))
    key = ("rollwise_notifications_failed_total", (("replica", "r1"), ("target", "slack")))
    assert found[key] == 2


def test_without_notifications_there_is_no_such_series() -> None:
    found = samples(GatewayCollector(list, dict))
    assert not [name for name, _ in found if name.startswith("rollwise_notifications")]
