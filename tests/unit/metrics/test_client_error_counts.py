"""Client errors in metric windows: counted apart from errors, stored, merged, exported.

A request a version refuses as bad input is a request, but neither
an error of the version nor an answer with a latency.
"""

from __future__ import annotations

import orjson

from rollwise.domain import Role
from rollwise.metrics.prometheus import GatewayCollector, render
from rollwise.metrics.recorder import MetricKey, VersionWindow, merge_windows


def measured(answered: int = 0, failed: int = 0, refused: int = 0) -> VersionWindow:
    window = VersionWindow()
    for _ in range(answered):
        window.record_call(5.0, failed=False, timed_out=False)
    for _ in range(failed):
        window.record_call(7.0, failed=True, timed_out=False)
    for _ in range(refused):
        window.record_refusal()
    return window


def test_a_refusal_is_a_request_but_neither_an_error_nor_a_latency() -> None:
    window = measured(answered=3, failed=1, refused=2)
    assert (window.requests, window.errors, window.client_errors) == (6, 1, 2)
    assert window.latency_ms.count == 4
    assert window.latency_sum_ms == 22.0
    assert not measured(refused=1).empty


def test_client_errors_survive_the_stores_json_and_merge_by_addition() -> None:
    window = measured(answered=1, refused=3)
    payload = orjson.loads(orjson.dumps(window.to_payload()))
    assert payload["client_errors"] == 3
    restored = VersionWindow.from_payload(payload)
    assert restored.client_errors == 3
    assert merge_windows([restored, measured(refused=2)]).client_errors == 5
    assert VersionWindow.from_payload({"requests": 2}).client_errors == 0


def test_the_summary_shows_client_errors_and_their_share_of_requests() -> None:
    summary = measured(answered=6, failed=1, refused=3).summary()
    assert (summary["errors"], summary["error_rate"]) == (1, 0.1)
    assert (summary["client_errors"], summary["client_error_rate"]) == (3, 0.3)


def test_metrics_export_client_errors_per_version_and_role() -> None:
    totals: list[tuple[MetricKey, VersionWindow]] = [
        (("iris", "v1", Role.SERVED), measured(answered=2, refused=1)),
        (("iris", "v2", Role.SHADOW), measured(answered=1, failed=1, refused=4)),
    ]
    text = render(GatewayCollector(lambda: totals, dict)).decode()
    assert 'rollwise_client_errors_total{model="iris",role="served",version="v1"} 1.0' in text
    assert 'rollwise_client_errors_total{model="iris",role="shadow",version="v2"} 4.0' in text
    assert 'rollwise_errors_total{model="iris",role="served",version="v1"} 0.0' in text
    assert 'rollwise_errors_total{model="iris",role="shadow",version="v2"} 1.0' in text
