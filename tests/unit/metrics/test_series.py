"""Metrics over time: steps chosen and aligned, buckets grouped into them, each step's
figures (intervals against statsmodels), drift per step, and events as chart marks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from statsmodels.stats.proportion import proportion_confint

from rollwise.domain import Event, Role
from rollwise.metrics.recorder import VersionWindow
from rollwise.metrics.series import (
    DRIFT_MIN_OUTPUTS,
    MARK_KINDS,
    MAX_MARK_CHARS,
    SERVED_FIGURES,
    SHADOW_FIGURES,
    Grid,
    add_window,
    bucket_payloads,
    build_series,
    default_step_s,
    drift_series,
    mark,
    mark_events,
    step_drift,
    step_figures,
)
from rollwise.rollout.status import Phase
from rollwise.stats import drift

NOW = 1_765_000_007.25


def calls(n: int, *, errors: int = 0, latency_ms: float = 10.0) -> VersionWindow:
    window = VersionWindow()
    for i in range(n):
        window.record_call(latency_ms, failed=i < errors, timed_out=False)
    return window


def labelled(feedback: int, correct: int, abs_error_sum: float = 0.0) -> VersionWindow:
    window = VersionWindow()
    window.feedback, window.correct, window.abs_error_sum = feedback, correct, abs_error_sum
    return window


def outputs(counts: Mapping[str, int]) -> VersionWindow:
    window = VersionWindow()
    for label, count in counts.items():
        window.record_outputs([label] * count, categorical=True)
    return window


# -- the steps ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window_s", "step_s"),
    [
        pytest.param(60, 1, id="a minute is cut into seconds"),
        pytest.param(180, 1, id="180 s is exactly 180 one-second steps"),
        pytest.param(181, 2, id="one second more needs 2 s steps"),
        pytest.param(900, 5, id="15 minutes in 5 s steps"),
        pytest.param(3600, 30, id="an hour in 30 s steps (20 s is not a round step)"),
        pytest.param(86400, 600, id="a day in 10 minute steps"),
        pytest.param(7 * 86400, 3600, id="the longest window, a week, in hours"),
        pytest.param(100 * 86400, 86400, id="beyond the list, whole days"),
    ],
)
def test_the_default_step_is_the_smallest_round_one_giving_about_180_points(
    window_s: int, step_s: int
) -> None:
    assert default_step_s(window_s) == step_s
    assert window_s / step_s <= 180


@pytest.mark.parametrize(
    ("until_s", "window_s", "step_s", "first_s", "count"),
    [
        pytest.param(1000.0, 100, 10, 900, 11, id="aligned: the step holding now is extra"),
        pytest.param(1005.5, 100, 10, 900, 11, id="now inside a step"),
        pytest.param(1009.9, 30, 10, 970, 4, id="window start inside a step"),
        pytest.param(1000.0, 5, 10, 990, 2, id="a window shorter than a step"),
        pytest.param(7.0, 1, 1, 6, 2, id="one-second steps"),
    ],
)
def test_the_grid_is_aligned_to_the_step_and_covers_the_window_up_to_now(
    until_s: float, window_s: int, step_s: int, first_s: int, count: int
) -> None:
    grid = Grid.covering(until_s, window_s, step_s)
    assert (grid.first_s, grid.count) == (first_s, count)
    times = grid.times_s()
    assert all(t % step_s == 0 for t in times)
    assert times[0] <= until_s - window_s < times[0] + step_s
    assert times[-1] <= until_s < times[-1] + step_s
    assert times == sorted(times) and len(times) == count


def test_the_last_step_has_lasted_until_now_and_at_least_a_second() -> None:
    grid = Grid.covering(1004.5, 60, 10)
    assert grid.seconds_in(0) == 10.0
    assert grid.seconds_in(grid.count - 1) == 4.5
    assert Grid.covering(1000.2, 60, 10).seconds_in(6) == 1.0


def test_late_labels_count_toward_the_step_of_their_predictions_and_strays_are_left_out() -> None:
    grid = Grid.covering(1000.0, 60, 10)  # steps 940 .. 1000
    rows: list[tuple[str, Role, float, Mapping[str, Any]]] = [
        ("v1", Role.SERVED, 955, calls(3).to_payload()),
        ("v1", Role.SERVED, 959, calls(2).to_payload()),
        # Late labels that arrived at 998 for predictions made at 951.
        ("v1", Role.SERVED, 951, labelled(4, 3).to_payload()),
        ("v1", Role.SERVED, 930, calls(7).to_payload()),  # before the grid
        ("v1", Role.SERVED, 1011, calls(7).to_payload()),  # a replica's clock ahead
        ("v2", Role.SHADOW, 1000, calls(1).to_payload()),
    ]
    steps = bucket_payloads(grid, rows)
    assert set(steps) == {("v1", Role.SERVED), ("v2", Role.SHADOW)}
    step = steps["v1", Role.SERVED]
    assert list(step) == [1]
    assert (step[1].requests, step[1].feedback, step[1].correct) == (5, 4, 3)
    assert list(steps["v2", Role.SHADOW]) == [6]


def test_an_unflushed_window_is_added_to_its_step_and_an_empty_one_is_not() -> None:
    grid = Grid.covering(1000.0, 60, 10)
    steps = bucket_payloads(grid, [("v1", Role.SERVED, 995, calls(2).to_payload())])
    add_window(steps, grid, ("v1", Role.SERVED), 999, calls(3))
    add_window(steps, grid, ("v1", Role.PREVIEW), 999, VersionWindow())
    assert steps["v1", Role.SERVED][5].requests == 5
    assert ("v1", Role.PREVIEW) not in steps


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["v1", "v2"]),
            st.sampled_from(list(Role)),
            st.integers(900, 1100),
            st.integers(0, 50),
            st.integers(0, 5),
        ),
        max_size=60,
    ),
    st.integers(1, 120),
    st.integers(1, 30),
)
def test_requests_over_the_steps_add_up_to_those_of_the_buckets_in_the_grid(
    buckets: list[tuple[str, Role, int, int, int]], window_s: int, step_s: int
) -> None:
    grid = Grid.covering(1050.5, window_s, step_s)
    rows = [(v, r, float(s), calls(n, errors=min(e, n)).to_payload()) for v, r, s, n, e in buckets]
    steps = bucket_payloads(grid, rows)
    end_s = grid.first_s + grid.count * step_s
    inside = [b for b in buckets if grid.first_s <= b[2] < end_s]
    assert sum(w.requests for by in steps.values() for w in by.values()) == sum(
        b[3] for b in inside
    )
    series = build_series(grid, steps, stable="v1", task="classification")
    # The rates give the counts back, the last step's over the time it has lasted.
    from_rates = sum(
        rate * grid.seconds_in(i)
        for roles in series.versions.values()
        for figures in roles.values()
        for i, rate in enumerate(figures["requests_per_s"])
        if rate is not None
    )
    assert from_rates == pytest.approx(sum(b[3] for b in inside), rel=1e-5)
    for roles in series.versions.values():
        for figures in roles.values():
            assert all(len(values) == grid.count for values in figures.values())


# -- one step's figures -------------------------------------------------------------------


def served_figures(window: VersionWindow | None, task: str = "classification") -> dict[str, Any]:
    return step_figures(window, 10.0, task, Role.SERVED)


@pytest.mark.parametrize(
    ("window", "task", "expected"),
    [
        pytest.param(
            None,
            "classification",
            {"requests_per_s": 0.0, "error_rate": None, "latency_p50_ms": None, "feedback": 0},
            id="no data: no requests, no rates",
        ),
        pytest.param(
            calls(20, errors=5),
            "classification",
            {"requests_per_s": 2.0, "error_rate": 0.25, "accuracy": None, "mae": None},
            id="requests without labels: no accuracy",
        ),
        pytest.param(
            labelled(10, 7),
            "classification",
            {"requests_per_s": 0.0, "error_rate": None, "accuracy": 0.7, "feedback": 10},
            id="labels of a step whose requests came earlier",
        ),
        pytest.param(
            labelled(4, 0, abs_error_sum=2.0),
            "regression",
            {"accuracy": None, "accuracy_low": None, "mae": 0.5, "feedback": 4},
            id="regression has a mean error and no accuracy",
        ),
    ],
)
def test_a_step_has_zero_counts_and_no_figure_it_lacks_data_for(
    window: VersionWindow | None, task: str, expected: dict[str, Any]
) -> None:
    figures = served_figures(window, task)
    assert set(figures) == set(SERVED_FIGURES)
    assert {k: figures[k] for k in expected} == expected


def test_latency_quantiles_come_from_the_merged_histogram() -> None:
    window = calls(90, latency_ms=5.0)
    window.merge(calls(10, latency_ms=200.0))
    figures = served_figures(window)
    assert figures["latency_p50_ms"] == pytest.approx(5.0, rel=0.08)
    assert figures["latency_p99_ms"] == pytest.approx(200.0, rel=0.08)


def test_a_shadow_step_has_agreement_with_its_interval_and_drops() -> None:
    window = calls(40)
    window.compared, window.agreed, window.dropped = 40, 30, 3
    figures = step_figures(window, 10.0, "classification", Role.SHADOW)
    assert set(figures) == set(SHADOW_FIGURES)
    assert figures["agreement"] == 0.75 and figures["dropped"] == 3
    assert figures["agreement_low"] < 0.75 < figures["agreement_high"]
    empty = step_figures(None, 10.0, "classification", Role.SHADOW)
    assert (empty["agreement"], empty["agreement_low"], empty["dropped"]) == (None, None, 0)


@pytest.mark.parametrize(
    ("correct", "feedback"),
    [
        pytest.param(0, 1, id="one wrong label"),
        pytest.param(1, 1, id="one right label"),
        pytest.param(7, 10, id="few labels"),
        pytest.param(0, 250, id="all wrong"),
        pytest.param(250, 250, id="all right"),
        pytest.param(941, 1000, id="a thousand labels"),
    ],
)
def test_the_accuracy_interval_is_wilsons_as_statsmodels_computes_it(
    correct: int, feedback: int
) -> None:
    figures = served_figures(labelled(feedback, correct))
    low, high = proportion_confint(correct, feedback, alpha=0.05, method="wilson")
    assert figures["accuracy_low"] == pytest.approx(float(low), rel=1e-5, abs=1e-9)
    assert figures["accuracy_high"] == pytest.approx(float(high), rel=1e-5, abs=1e-9)


# -- drift --------------------------------------------------------------------------------


def test_drift_is_the_psi_of_the_two_versions_outputs_in_the_step() -> None:
    stable = outputs({"0": 80, "1": 20, "2": 20})
    candidate = outputs({"0": 20, "1": 80, "2": 20})
    expected = drift.psi([80, 20, 20], [20, 80, 20]).value
    assert step_drift(stable, candidate) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("stable", "candidate"),
    [
        pytest.param(None, outputs({"0": 200}), id="no stable data"),
        pytest.param(outputs({"0": 200}), None, id="no candidate data"),
        pytest.param(
            outputs({"0": DRIFT_MIN_OUTPUTS - 1}), outputs({"0": 200}), id="too few stable outputs"
        ),
        pytest.param(
            outputs({"0": 200}), outputs({"1": DRIFT_MIN_OUTPUTS - 1}), id="too few candidate ones"
        ),
    ],
)
def test_drift_is_none_without_enough_outputs_on_both_sides(
    stable: VersionWindow | None, candidate: VersionWindow | None
) -> None:
    assert step_drift(stable, candidate) is None


def test_drift_is_none_between_labels_and_numbers() -> None:
    numbers = VersionWindow()
    numbers.record_outputs([1.5] * 200, categorical=False)
    assert step_drift(outputs({"0": 200}), numbers) is None
    assert step_drift(numbers, numbers.copy()) == pytest.approx(0.0, abs=1e-6)


def test_drift_uses_the_candidates_shadow_outputs_where_it_serves_too_few() -> None:
    grid = Grid.covering(1019.0, 20, 10)  # steps 990, 1000, 1010
    steps: dict[tuple[str, Role], dict[int, VersionWindow]] = {
        ("v1", Role.SERVED): {0: outputs({"0": 150}), 1: outputs({"0": 150})},
        ("v2", Role.SERVED): {1: outputs({"1": 150})},
        ("v2", Role.SHADOW): {0: outputs({"0": 150})},
    }
    values = drift_series(grid, steps, "v1", "v2")
    assert values[0] == pytest.approx(0.0, abs=1e-9)  # mirrored, same answers
    assert values[1] is not None and values[1] > 1.0  # served, other answers
    assert values[2] is None


# -- the whole series ---------------------------------------------------------------------


def test_versions_come_in_the_models_order_without_the_roles_they_had_no_data_in() -> None:
    grid = Grid.covering(NOW, 30, 10)
    steps = bucket_payloads(
        grid,
        [
            ("old", Role.SERVED, NOW - 1, calls(1).to_payload()),
            ("v2", Role.SHADOW, NOW - 1, calls(2).to_payload()),
            ("v1", Role.SERVED, NOW - 12, calls(3).to_payload()),
        ],
    )
    series = build_series(grid, steps, stable="v1", task="classification", order=["v1", "v2"])
    body = series.to_dict()
    assert list(body["versions"]) == ["v1", "v2", "old"]
    assert list(body["versions"]["v1"]) == ["served"]
    assert list(body["versions"]["v2"]) == ["shadow"]
    assert set(body["drift"]) == {"v2", "old"}
    assert body["times_s"] == grid.times_s() and body["step_s"] == 10 and body["until_s"] == NOW
    assert body["versions"]["v1"]["served"]["requests_per_s"] == [0.0, 0.0, 0.3, 0.0]


# -- marks --------------------------------------------------------------------------------


def event(kind: str, at_s: float, message: str = "m", **data: Any) -> Event:
    return Event("iris", kind, message, data, at_s=at_s, id=int(at_s), actor="ops")


def test_marks_are_the_routing_and_rollout_events_of_the_window_oldest_first() -> None:
    events = [
        event("rollout.step", 1500, "step 2/3: weight 30 %", rollout=7),
        event("routing.changed", 1200, "weights v1=90, v2=10"),
        event("version.reloaded", 1300),
        event("rollout.interface_change_allowed", 1300),
        event("rollout.started", 900, candidate="v2", rollout=7),  # before the window
        event("rollout.started", 1100, candidate="v3", rollout=8),
    ]
    chosen = mark_events(events, 1000, 2000)
    assert [e.kind for e in chosen] == ["rollout.started", "routing.changed", "rollout.step"]
    marks = [mark(e, {7: "v2"}) for e in chosen]
    assert marks == [
        {"at_s": 1100, "kind": "rollout.started", "version": "v3", "text": "m"},
        {
            "at_s": 1200,
            "kind": "routing.changed",
            "version": None,
            "text": "routing set by ops: weights v1=90, v2=10",
        },
        {"at_s": 1500, "kind": "rollout.step", "version": "v2", "text": "step 2/3: weight 30 %"},
    ]


def test_only_the_newest_marks_are_kept_past_the_limit() -> None:
    events = [event("rollout.step", 1000 + i) for i in range(10)]
    assert [e.at_s for e in mark_events(events, 0, 5000, limit=3)] == [1007, 1008, 1009]


def test_a_marks_text_is_one_short_line_of_plain_text() -> None:
    long = "paused by ops (because\n\tthe\x00 dashboard <b>said</b> so) " + "x" * 500
    text = mark(event("rollout.paused", 1, long), {})["text"]
    assert "\n" not in text and "\t" not in text and "\x00" not in text
    assert text.startswith("paused by ops (because the dashboard <b>said</b> so)")
    assert len(text) == MAX_MARK_CHARS and text.endswith("…")


def test_every_end_of_a_rollout_and_a_person_s_command_is_a_mark() -> None:
    ends = {f"rollout.{p.value}" for p in Phase if not p.active}
    commands = {"rollout.paused", "rollout.resumed", "rollout.step_skipped"}
    assert ends | commands <= MARK_KINDS
