"""Notifications from a real gateway with its controller: a rollback reaches the
receivers within a tick, in each target's format and filtered as configured, and dead
receivers (one refusing connections, one that never answers) delay no rollout and are
counted in /metrics."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rollwise.client import Client
from support.gateway import OPERATOR, GatewayProcess, eventually, free_port
from support.notify_receiver import Receiver
from support.rollouts import (
    CONTROLLER,
    SERVER,
    Traffic,
    all_ready,
    rollout_events,
    wait_until_ended,
)

FAKES = {"a": {"backend": "fake", "label": 0}, "b": {"backend": "fake", "label": 0}}
FAULTY = {"a": {"backend": "fake", "label": 0}, "b": {"backend": "fake", "error_rate": 1.0}}
HANG_TIMEOUT_S = 4.0
PAUSE_S = 1.0


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def hanging() -> Iterator[Receiver]:
    receiver = Receiver("hang").start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver, hanging: Receiver
) -> Iterator[GatewayProcess]:
    config: dict[str, Any] = {
        "store": "sqlite:///state.db",
        "server": dict(SERVER),
        "controller": dict(CONTROLLER),
        "models": {
            name: {"sticky_key": "header:X-User-Id", "stable": "a", "versions": versions}
            for name, versions in (("faulty", FAULTY), ("steady", FAKES))
        },
        "notifications": [
            {
                "name": "json",
                "url": f"{receiver.url}/json",
                "events": ["started", "rolled_back"],
                "models": ["faulty"],
                "headers": {"Authorization": {"env": "HOOK_TOKEN", "prefix": "Bearer "}},
            },
            {"name": "slack", "url": f"{receiver.url}/slack", "format": "slack",
             "events": ["rolled_back"]},
            {"name": "steady", "url": f"{receiver.url}/steady", "models": ["steady"]},
            {"name": "refused", "url": f"http://127.0.0.1:{free_port()}/hook", "retries": 1,
             "backoff_s": 0.1, "timeout_s": 1},
            {"name": "hanging", "url": f"{hanging.url}/hook", "retries": 1, "backoff_s": 0.1,
             "timeout_s": HANG_TIMEOUT_S, "queue_size": 2},
        ],
    }  # fmt: skip
    process = GatewayProcess(tmp_path_factory.mktemp("gateway"), config)
    # The header's secret is in the gateway's environment only, never in its config.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOOK_TOKEN", "hook-secret-1")
        process.start()
    try:
        with Client(process.url, OPERATOR) as client:
            eventually(lambda: all_ready(client), timeout_s=60)
        yield process
    finally:
        process.stop()


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[Client]:
    with Client(gateway.url, OPERATOR) as client:
        yield client


def metric(gateway: GatewayProcess, name: str, target: str) -> float:
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    found = re.search(rf'^{name}{{target="{target}"}} (\S+)$', text, re.MULTILINE)
    assert found, f"no {name} of {target} in /metrics"
    return float(found.group(1))


def test_a_rollback_reaches_each_receiver_within_a_tick_in_its_format_and_filtered(
    gateway: GatewayProcess, client: Client, receiver: Receiver
) -> None:
    spec = {
        "model": "faulty",
        "candidate": "b",
        "strategy": "steps",
        "steps": [{"set_weight": 50}, {"pause": {}}],
        "gates": [{"metric": "error_rate", "max_increase": 0.05, "min_samples": 20}],
    }
    with Traffic(gateway.url, "faulty", rate_per_s=60, feedback=False):
        client.apply(spec)
        ended = wait_until_ended(client, "faulty")
    assert ended["status"]["phase"] == "rolled_back"
    events = rollout_events(client, "faulty")
    rolled_back = next(e for e in events if e["kind"] == "rollout.rolled_back")

    eventually(lambda: len(receiver.bodies("/slack")) == 1)
    eventually(lambda: len(receiver.bodies("/json")) == 2)
    # Only the events the json target asked for, of the model it asked for, in order.
    started, told = receiver.bodies("/json")
    assert (started["kind"], told["kind"]) == ("rollout.started", "rollout.rolled_back")
    assert started["data"]["rollout"] == told["data"]["rollout"] == ended["id"]
    assert told["message"] == rolled_back["message"]
    assert told["actor"] == "controller" and told["at_s"] == rolled_back["at_s"]
    (slack,) = receiver.bodies("/slack")
    assert slack == {
        "text": f":rotating_light: faulty rollout #{ended['id']} rolled back: "
        f"{' '.join(rolled_back['message'].split())} (by controller)"
    }
    # The secret header came from the environment; the steady target heard nothing.
    json_request = next(r for r in receiver.requests() if r.path == "/json")
    assert json_request.headers["Authorization"] == "Bearer hook-secret-1"
    assert not [b for b in receiver.bodies("/steady") if b["model"] == "faulty"]
    # Sent at the tick that decided it: well within a tick of 0.5 s plus a busy
    # machine's slack, never a retry's or another target's wait.
    arrived = next(r for r in receiver.requests() if r.path == "/slack")
    assert arrived.at_s - rolled_back["at_s"] < 3.0
    assert "hook-secret-1" not in gateway.log()


def test_dead_receivers_delay_no_rollout_and_are_counted_as_failed(
    gateway: GatewayProcess, client: Client, receiver: Receiver, hanging: Receiver
) -> None:
    spec = {
        "model": "steady",
        "candidate": "b",
        "strategy": "steps",
        "steps": [
            {"set_weight": 20},
            {"pause": {"duration_s": PAUSE_S}},
            {"set_weight": 60},
            {"pause": {"duration_s": PAUSE_S}},
            {"set_weight": 100},
        ],
    }
    client.apply(spec)
    ended = wait_until_ended(client, "steady")
    assert ended["status"]["phase"] == "promoted"
    times = [e["at_s"] for e in rollout_events(client, "steady")]
    # Every event went to a receiver that refuses connections and to one that never
    # answers (each attempt waits HANG_TIMEOUT_S, twice). Had a tick waited for either,
    # each step would have taken that long on top of its pause.
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert max(gaps) < PAUSE_S + HANG_TIMEOUT_S / 2, gaps

    # The steady target got the whole story, in order.
    eventually(lambda: any(b["kind"] == "rollout.promoted" for b in receiver.bodies("/steady")))
    told = [b["event"] for b in receiver.bodies("/steady")]
    assert told[0] == "started" and told[-1] == "promoted" and "step" in told

    eventually(
        lambda: metric(gateway, "rollwise_notifications_failed_total", "refused") >= len(times)
    )
    assert metric(gateway, "rollwise_notifications_sent_total", "refused") == 0
    # The hanging one holds one notification at a time; its queue of 2 dropped the rest.
    assert metric(gateway, "rollwise_notifications_dropped_total", "hanging") >= 1
    eventually(
        lambda: metric(gateway, "rollwise_notifications_failed_total", "hanging") >= 1,
        timeout_s=4 * HANG_TIMEOUT_S,
    )
    assert metric(gateway, "rollwise_notifications_sent_total", "steady") >= len(times)
    # Each dead target is logged once, not once per notification.
    log = gateway.log()
    assert len(re.findall(r"to refused failed after", log)) == 1, log[-3000:]
    assert len(re.findall(r"to hanging failed after", log)) == 1
