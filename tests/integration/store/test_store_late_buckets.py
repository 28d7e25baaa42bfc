"""Buckets of late labels: the second of their predictions comes back as it was written,
beside figures that hold nothing else, and buckets of one key written twice, in one
batch or two, are all kept and add up."""

from __future__ import annotations

from rollwise.domain import Role
from rollwise.metrics.recorder import windows_by_version
from rollwise.store import Store
from rollwise.store.base import MetricBucketRow


def bucket(predicted_s: int | None, feedback: int) -> MetricBucketRow:
    return MetricBucketRow(
        "iris", "v2", Role.SERVED, 500, 1, "r1", {"feedback": feedback}, predicted_s
    )


def test_late_buckets_keep_their_second_and_add_up_with_their_key(store: Store) -> None:
    store.write_metric_buckets([bucket(None, 1), bucket(420, 2)])
    store.write_metric_buckets([bucket(420, 4), bucket(None, 8)])

    rows = store.read_metric_buckets("iris", 500)
    assert sorted((r.predicted_s or 0, r.payload["feedback"]) for r in rows) == [
        (0, 1),
        (0, 8),
        (420, 2),
        (420, 4),
    ]
    assert all(dict(r.payload) == {"feedback": r.payload["feedback"]} for r in rows)
    assert sorted(r.measured_s for r in rows) == [420, 420, 500, 500]
    merged = windows_by_version((r.version, r.role, r.payload) for r in rows)
    assert merged[("v2", Role.SERVED)].feedback == 15
