"""The terminal views of versions, replicas and events: the texts people read."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from rollwise.views import (
    duration_text,
    event_line,
    fleet_text,
    replica_states_text,
    replicas_table,
    version_problems,
    versions_table,
)


def render(renderable: Any) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(0.4, "0 s", id="under a second"),
        pytest.param(42, "42 s", id="seconds up to two minutes"),
        pytest.param(300, "5 min", id="minutes"),
        pytest.param(3 * 3600, "3 h", id="whole hours"),
        pytest.param(3 * 3600 + 20 * 60, "3 h 20 min", id="hours and minutes"),
        pytest.param(2 * 86400 + 4 * 3600, "2 d 4 h", id="days and hours"),
        pytest.param(-5, "0 s", id="a clock behind shows no negative time"),
        pytest.param(None, "-", id="unknown"),
    ],
)
def test_durations_read_like_people_say_them(seconds: float | None, text: str) -> None:
    assert duration_text(seconds) == text


@pytest.mark.parametrize(
    ("fleet", "text"),
    [
        pytest.param({"summary": "ready on 2/3 replicas"}, "ready on 2/3 replicas", id="summary"),
        pytest.param({"live": 3, "ready": 1}, "ready on 1/3 replicas", id="counts only"),
        pytest.param({"live": 1, "ready": 1}, "ready on 1/1 replica", id="one replica"),
        pytest.param({"live": 0, "ready": 0}, "no live replica", id="no live replica"),
        pytest.param(None, "-", id="no fleet reported"),
    ],
)
def test_fleet_text(fleet: dict[str, Any] | None, text: str) -> None:
    assert fleet_text(fleet) == text


def test_replica_states_are_counted_ready_first() -> None:
    replicas = [{"health": h} for h in ("loading", "ready", "failed", "ready")]

    assert replica_states_text(replicas) == "2 ready, 1 loading, 1 failed"


V4: dict[str, Any] = {
    "model": "iris",
    "name": "v4",
    "source": "api",
    "backend": "onnx",
    "artifact_sha256": "0123456789abcdef" * 4,
    "fleet": {
        "live": 3,
        "ready": 2,
        "everywhere": False,
        "failed": {"gw-2": "bad file"},
        "summary": "ready on 2/3 replicas",
    },
    "replicas": [
        {"replica": "gw-1", "health": "ready"},
        {"replica": "gw-2", "health": "failed", "error": "bad file"},
        {"replica": "gw-3", "health": "ready"},
    ],
}


def test_versions_table_shows_source_digest_and_fleet() -> None:
    text = render(versions_table([V4]))
    (row,) = [line for line in text.splitlines() if "│ iris" in line]
    cells = [cell.strip() for cell in row.split("│")[1:-1]]

    assert cells == [
        "iris",
        "v4",
        "api",
        "onnx",
        "0123456789ab",
        "ready on 2/3 replicas",
        "2 ready, 1 failed",
    ]
    assert version_problems([V4]) == ["iris v4 failed on gw-2: bad file"]


def test_replicas_table_shows_uptime_last_seen_and_versions_ready() -> None:
    now = 10_000.0
    replicas = [
        {
            "id": "gw-1",
            "host": "box",
            "pid": 41,
            "started_at_s": now - 3600,
            "last_seen_s": now - 2,
            "live": True,
            "stopped": False,
            "versions": {"iris/v1": "ready", "iris/v4": "loading"},
        },
        {
            "id": "gw-2",
            "host": "box",
            "pid": 42,
            "started_at_s": now - 7200,
            "last_seen_s": now - 600,
            "live": False,
            "stopped": True,
            "versions": {"iris/v1": "ready"},
        },
    ]

    text = render(replicas_table(replicas, now))
    rows = [
        [c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if "│ gw-" in line
    ]

    assert rows == [
        ["gw-1", "box", "41", "1 h", "2 s ago", "yes", "1/2"],
        # A stopped replica was up until it was last seen.
        ["gw-2", "box", "42", "1 h 50 min", "10 min ago", "stopped", "1/1"],
    ]


def test_an_event_is_one_line_with_its_utc_time() -> None:
    event = {"at_s": 3723.0, "kind": "rollout.step", "message": "step 1/3: set weight 20 %"}

    assert event_line(event) == "01:02:03 rollout.step: step 1/3: set weight 20 %"
