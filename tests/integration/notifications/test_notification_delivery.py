"""Delivering notifications to real receivers on loopback: retries, timeouts, the
queue's bound, and a failing target logged once — with no gateway in the way."""

from __future__ import annotations

import logging
import time

import pytest

from rollwise.domain import Event
from rollwise.notifications.sender import Counts, Notifier
from rollwise.notifications.targets import Target, kinds_for
from support.gateway import eventually, free_port
from support.notify_receiver import receiving


def rollback(model: str = "iris", rollout: int = 1) -> Event:
    return Event(
        model=model,
        kind="rollout.rolled_back",
        message="rolled back to v1: gate failed: error_rate 0.5 > 0.01",
        data={"rollout": rollout, "outcome": "rolled_back"},
        at_s=time.time(),
        actor="controller",
    )


def counts(notifier: Notifier, name: str) -> Counts:
    return next(c for c in notifier.counts() if c.target == name)


def test_each_target_gets_its_format_its_headers_and_only_what_it_filters_for() -> None:
    with receiving() as receiver:
        notifier = Notifier(
            [
                Target("json", f"{receiver.url}/json", headers={"authorization": "Bearer s3cret"}),
                Target("slack", f"{receiver.url}/slack", format="slack"),
                Target("wine", f"{receiver.url}/wine", models=frozenset({"wine"})),
                Target("steps", f"{receiver.url}/steps", kinds=kinds_for(["step"])),
            ]
        ).start()
        try:
            notifier.publish([rollback()])
            eventually(lambda: len(receiver.requests()) == 2)
        finally:
            notifier.close()
        (json_body,) = receiver.bodies("/json")
        assert json_body["kind"] == "rollout.rolled_back" and json_body["event"] == "rolled_back"
        assert json_body["data"]["rollout"] == 1
        (slack_body,) = receiver.bodies("/slack")
        assert slack_body == {
            "text": ":rotating_light: iris rollout #1 rolled back: rolled back to v1: gate "
            "failed: error_rate 0.5 > 0.01 (by controller)"
        }
        sent = {r.path: r.headers for r in receiver.requests()}
        assert sent["/json"]["Authorization"] == "Bearer s3cret"
        assert sent["/json"]["Content-Type"] == "application/json"
        assert [c.sent for c in notifier.counts()] == [1, 1, 0, 0]


def test_a_failing_receiver_is_retried_then_counted_as_failed_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "rollwise.notifications")
    with receiving("fail") as receiver:
        target = Target("flaky", f"{receiver.url}/hook", retries=2, backoff_s=0.05)
        notifier = Notifier([target]).start()
        try:
            notifier.publish([rollback(rollout=1), rollback(rollout=2)])
            eventually(lambda: counts(notifier, "flaky").failed == 2)
            # Each notification was tried 1 + retries times.
            assert receiver.attempts == 6
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1, [r.getMessage() for r in warnings]
            assert "HTTP 500" in warnings[0].getMessage()
            # The receiver recovers: the next notification goes through, and it is said.
            receiver.mode = "ok"
            notifier.publish([rollback(rollout=3)])
            eventually(lambda: counts(notifier, "flaky").sent == 1)
            eventually(lambda: "delivered again" in caplog.text)
        finally:
            notifier.close()
    assert receiver.bodies("/hook")[0]["data"]["rollout"] == 3


def test_a_refused_connection_fails_fast_and_publishing_never_waits() -> None:
    dead = Target("dead", f"http://127.0.0.1:{free_port()}/hook", retries=1, backoff_s=0.05)
    notifier = Notifier([dead]).start()
    try:
        began = time.monotonic()
        notifier.publish([rollback(rollout=n) for n in range(5)])
        published_s = time.monotonic() - began
        eventually(lambda: counts(notifier, "dead").failed == 5)
    finally:
        notifier.close()
    # Queuing five events is bookkeeping, not I/O (a generous bound for a busy machine).
    assert published_s < 0.5
    assert counts(notifier, "dead").sent == 0


def test_a_hanging_receiver_times_out_and_a_full_queue_drops_the_oldest() -> None:
    with receiving("hang") as receiver:
        target = Target("hanging", f"{receiver.url}/hook", timeout_s=0.5, retries=0, queue_size=2)
        notifier = Notifier([target]).start()
        try:
            notifier.publish([rollback(rollout=1)])
            eventually(lambda: receiver.attempts == 1)
            # The first is in flight; of the next four, the queue keeps the newest two.
            notifier.publish([rollback(rollout=n) for n in range(2, 6)])
            assert counts(notifier, "hanging").dropped == 2
            assert counts(notifier, "hanging").queued == 2
            eventually(lambda: counts(notifier, "hanging").failed == 3)
        finally:
            notifier.close(drain_s=0)
    assert receiver.attempts == 3


def test_what_is_queued_at_a_stop_still_goes_out() -> None:
    with receiving() as receiver:
        notifier = Notifier([Target("last", f"{receiver.url}/hook")]).start()
        notifier.publish([rollback(rollout=n) for n in range(3)])
        notifier.close(drain_s=5)
        assert [b["data"]["rollout"] for b in receiver.bodies()] == [0, 1, 2]
