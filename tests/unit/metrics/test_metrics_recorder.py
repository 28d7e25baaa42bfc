"""Metric windows: they merge by addition, survive the store's JSON, and swap cleanly."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollwise.domain import Role
from rollwise.metrics.recorder import (
    MAX_CATEGORIES,
    OTHER_CATEGORY,
    MetricsRecorder,
    VersionWindow,
    merge_windows,
)


def window(latencies: list[float], outputs: list[int], errors: int = 0) -> VersionWindow:
    result = VersionWindow()
    for latency in latencies:
        result.requests += 1
        result.latency_ms.record(latency)
        result.latency_sum_ms += latency
    result.errors += errors
    result.record_outputs(outputs, categorical=True)
    return result


def test_a_payload_survives_a_json_round_trip() -> None:
    original = window([1.0, 2.5, 40.0], [0, 1, 1], errors=1)
    original.compared, original.agreed, original.feedback, original.correct = 3, 2, 2, 1
    restored = VersionWindow.from_payload(orjson.loads(orjson.dumps(original.to_payload())))
    assert restored.to_payload() == original.to_payload()
    assert restored.latency_ms.quantile(0.5) == original.latency_ms.quantile(0.5)


def test_an_empty_window_has_an_empty_payload() -> None:
    assert VersionWindow().to_payload() == {}
    assert VersionWindow().empty


@given(
    st.lists(st.floats(min_value=0.01, max_value=5000), max_size=30),
    st.lists(st.floats(min_value=0.01, max_value=5000), max_size=30),
)
def test_merging_equals_recording_everything_in_one_window(a: list[float], b: list[float]) -> None:
    merged = merge_windows([window(a, [0] * len(a)), window(b, [1] * len(b))])
    together = window(a + b, [0] * len(a) + [1] * len(b))
    assert merged.requests == together.requests
    assert merged.latency_ms.counts() == together.latency_ms.counts()
    assert merged.outputs == together.outputs
    assert merged.latency_sum_ms == pytest.approx(together.latency_sum_ms)


def test_categories_beyond_the_cap_are_counted_as_other() -> None:
    result = VersionWindow()
    result.record_outputs(list(range(MAX_CATEGORIES + 10)), categorical=True)
    assert len(result.outputs) == MAX_CATEGORIES + 1
    assert result.outputs[OTHER_CATEGORY] == 10
    assert result.rows == MAX_CATEGORIES + 10


def test_numeric_outputs_keep_magnitudes_signs_and_sums() -> None:
    result = VersionWindow()
    result.record_outputs([1.5, -2.0, 3.0, "not a number"], categorical=False)
    assert result.output_values.count == 3
    assert result.negative_outputs == 1
    assert result.output_sum == pytest.approx(2.5)
    assert result.output_sum_sq == pytest.approx(2.25 + 4 + 9)


def test_whole_floats_and_ints_are_one_class() -> None:
    result = VersionWindow()
    result.record_outputs([1, 1.0, "1"], categorical=True)
    assert result.outputs == {"1": 3}


def test_summary_reports_rates_and_quantiles() -> None:
    summary = window([1.0] * 98 + [100.0, 100.0], [0] * 100, errors=5).summary()
    assert summary["error_rate"] == pytest.approx(0.05)
    assert summary["latency_p50_ms"] == pytest.approx(1.0, rel=0.08)
    assert summary["latency_p99_ms"] > 50


def test_swap_hands_over_the_window_and_keeps_totals() -> None:
    recorder = MetricsRecorder()
    recorder.window("m", "a", Role.SERVED).requests += 3
    recorder.window("m", "b", Role.SHADOW).dropped += 1
    swapped = recorder.swap()
    assert swapped[("m", "a", Role.SERVED)].requests == 3
    assert swapped[("m", "b", Role.SHADOW)].dropped == 1
    recorder.window("m", "a", Role.SERVED).requests += 2
    totals = dict(recorder.totals())
    assert totals[("m", "a", Role.SERVED)].requests == 5
    assert [(key, w.requests) for key, w in recorder.pending("m")] == [(("a", Role.SERVED), 2)]
    assert recorder.pending("other") == []


def test_swap_leaves_out_windows_where_nothing_happened() -> None:
    recorder = MetricsRecorder()
    recorder.window("m", "a", Role.SERVED)
    assert recorder.swap() == {}


def test_windows_the_store_did_not_take_come_back_once_and_count_once() -> None:
    recorder = MetricsRecorder()
    recorder.window("m", "a", Role.SERVED).requests += 3
    failed = recorder.swap()
    recorder.unwritten(failed)
    assert [(key, w.requests) for key, w in recorder.pending("m")] == [(("a", Role.SERVED), 3)]
    recorder.window("m", "a", Role.SERVED).requests += 2
    retried = recorder.swap()
    assert retried[("m", "a", Role.SERVED)].requests == 5
    assert recorder.swap() == {}
    assert dict(recorder.totals())[("m", "a", Role.SERVED)].requests == 5
