"""Which events a notification target is sent, and what it is sent."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from rollwise.domain import Event
from rollwise.metrics.series import MARK_KINDS
from rollwise.notifications.targets import (
    EVENT_NAMES,
    KIND_NAMES,
    Target,
    kinds_for,
    payload,
    summary,
    wants,
)

ROLLBACK = Event(
    model="iris",
    kind="rollout.rolled_back",
    message="rolled back to v1: gate error_rate failed:\n  0.31 > 0.01",
    data={"rollout": 7, "outcome": "rolled_back", "candidate": "v3"},
    at_s=1700000000.5,
    id=42,
    actor="controller",
)


def event(kind: str, model: str = "iris") -> Event:
    return Event(model=model, kind=kind, message="m", data={"rollout": 1}, at_s=1.0)


def target(**options: object) -> Target:
    return Target(name="hooks", url="http://127.0.0.1:1/hook", **options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Case:
    id: str
    events: list[str] | None
    models: list[str] | None
    kind: str
    model: str
    sent: bool


CASES = [
    Case("no filters: every rollout event is sent", None, None, "rollout.step", "iris", True),
    Case(
        "no filters: a routing change is not a rollout event",
        None,
        None,
        "routing.changed",
        "iris",
        False,
    ),
    Case(
        "no filters: an unloaded version is not sent", None, None, "version.unloaded", "iris", False
    ),
    Case(
        "rolled_back only: a rollback is sent",
        ["rolled_back"],
        None,
        "rollout.rolled_back",
        "iris",
        True,
    ),
    Case("rolled_back only: a step is not", ["rolled_back"], None, "rollout.step", "iris", False),
    Case(
        "step covers a step a person skipped", ["step"], None, "rollout.step_skipped", "iris", True
    ),
    Case("a listed model is sent", None, ["iris"], "rollout.promoted", "iris", True),
    Case("another model is not", None, ["iris"], "rollout.promoted", "wine", False),
    Case("both filters must hold", ["promoted"], ["wine"], "rollout.promoted", "iris", False),
    Case(
        "both filters hold",
        ["promoted", "failed"],
        ["iris", "wine"],
        "rollout.failed",
        "wine",
        True,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_target_is_sent_what_its_filters_ask_for(case: Case) -> None:
    chosen = target(
        kinds=kinds_for(case.events),
        models=frozenset(case.models) if case.models is not None else None,
    )
    assert wants(chosen, event(case.kind, case.model)) is case.sent


def test_every_name_stands_for_kinds_the_engine_records() -> None:
    # The engine's kinds that decide a rollout (what charts mark) are where names point.
    for name, kinds in EVENT_NAMES.items():
        assert kinds <= MARK_KINDS, name


def test_the_names_of_the_issue_are_all_there() -> None:
    expected = {"started", "step", "paused", "resumed", "promoted", "rolled_back", "failed"}
    expected |= {"validated", "experiment_decided"}
    assert expected <= set(EVENT_NAMES)
    assert KIND_NAMES["rollout.rolled_back"] == "rolled_back"


def test_the_json_format_carries_the_whole_event() -> None:
    sent = json.loads(payload(target(), ROLLBACK, "d1"))
    assert sent == {
        "id": "d1",
        "event_id": 42,
        "model": "iris",
        "kind": "rollout.rolled_back",
        "event": "rolled_back",
        "message": ROLLBACK.message,
        "actor": "controller",
        "at_s": 1700000000.5,
        "data": {"rollout": 7, "outcome": "rolled_back", "candidate": "v3"},
    }


def test_the_slack_format_is_one_readable_line() -> None:
    sent = json.loads(payload(target(format="slack"), ROLLBACK, "d1"))
    assert sent == {"text": summary(ROLLBACK)}
    assert sent["text"] == (
        ":rotating_light: iris rollout #7 rolled back: rolled back to v1: gate error_rate "
        "failed: 0.31 > 0.01 (by controller)"
    )
    assert "\n" not in sent["text"]


@pytest.mark.parametrize(
    ("kind", "start"),
    [
        ("rollout.started", ":rocket: iris rollout #1 started: m"),
        ("rollout.promoted", ":white_check_mark: iris rollout #1 promoted: m"),
        ("rollout.experiment_decided", ":bar_chart: iris rollout #1 experiment decided: m"),
    ],
    ids=["started", "promoted", "experiment decided"],
)
def test_each_summary_says_what_happened(kind: str, start: str) -> None:
    assert summary(event(kind)).startswith(start)


def test_a_target_shows_neither_its_url_nor_its_headers() -> None:
    secret = Target(
        name="slack", url="https://hooks.example/T0/B0/XYZSECRET", headers={"a": "TOKENSECRET"}
    )
    assert "SECRET" not in repr(secret)
