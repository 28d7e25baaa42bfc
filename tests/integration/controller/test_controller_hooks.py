"""Hooks end to end: a real gateway with its controller (short intervals) calls a hook
receiver on loopback.

- a failing pre-rollout hook keeps users off the candidate: no request is answered by
  it, and the rollout rolls back with the hook's answer in its reason;
- a webhook step that answers 500 rolls back (with ``on_failure: pause``, pauses);
- a confirm hook holds the rollout until it answers 2xx, then it goes on and the
  post-promotion hook is told;
- the POSTed JSON has the documented fields, and a credential header comes from the
  gateway's environment.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rollwise.client import Client
from support.gateway import OPERATOR, GatewayProcess
from support.hook_receiver import HookReceiver, hook_receiver
from support.rollouts import (
    rollout_config,
    rollout_events,
    wait_for_step,
    wait_until,
    wait_until_ended,
)

MODELS = ("prehook", "failing", "pausing", "confirmed")
TOKEN_VARIABLE = "ROLLWISE_SECRET_TEST_HOOK_TOKEN"
TOKEN = "Bearer hook-secret-7"
PAYLOAD_FIELDS = {
    "hook",
    "rollout_id",
    "model",
    "stable",
    "candidate",
    "strategy",
    "phase",
    "outcome",
    "message",
    "weight",
    "mirror",
    "step",
    "judgement",
    "sent_at_s",
}


@pytest.fixture(scope="module")
def receiver() -> Iterator[HookReceiver]:
    with hook_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    fake = {"a": {"backend": "fake", "label": 0}, "b": {"backend": "fake", "label": 1}}
    config = rollout_config({}, {name: fake for name in MODELS}, stable="a")
    os.environ[TOKEN_VARIABLE] = TOKEN  # the gateway process inherits it
    process = GatewayProcess(tmp_path_factory.mktemp("hooks"), config)
    try:
        yield process.start()
    finally:
        process.stop()
        os.environ.pop(TOKEN_VARIABLE, None)


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[Client]:
    with Client(gateway.url, token=OPERATOR) as opened:
        yield opened


class Users:
    """Requests of new users all the time in a thread; counts who answered them."""

    def __init__(self, url: str, model: str) -> None:
        self.url, self.model = url, model
        self.answered: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            n = 0
            while not self._stop.is_set():
                n += 1
                response = http.post(
                    f"/models/{self.model}/predict",
                    json={"inputs": [[5.1, 3.5, 1.4, 0.2]]},
                    headers={"x-user-id": f"user-{n}"},
                )
                if response.status_code == 200:
                    self.answered[response.headers["x-rollwise-version"]] += 1
                time.sleep(0.01)

    def __enter__(self) -> Users:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def spec(model: str, **more: Any) -> dict[str, Any]:
    return {"model": model, "candidate": "b", **more}


def hook_events(client: Client, model: str) -> list[dict[str, Any]]:
    return [e for e in rollout_events(client, model) if e["kind"] == "rollout.hook"]


def test_a_failing_pre_rollout_hook_keeps_users_off_the_candidate(
    gateway: GatewayProcess, client: Client, receiver: HookReceiver
) -> None:
    receiver.answer("/pre", 500, "acceptance suite: 3 of 40 failed")
    hook = {"url": f"{receiver.url}/pre", "retries": 1, "timeout_s": 2}

    with Users(gateway.url, "prehook") as users:
        client.apply(
            spec(
                "prehook",
                strategy="canary",
                canary={"weights": [50], "pause_s": 1},
                hooks={"pre_rollout": [hook], "on_rollback": [{"url": f"{receiver.url}/back"}]},
            )
        )
        ended = wait_until_ended(client, "prehook", timeout_s=30)
        time.sleep(0.5)  # requests in flight when it ended are counted too

    status = ended["status"]
    assert status["phase"] == "rolled_back"
    assert "pre-rollout hook failed" in status["message"]
    assert "answered 500: 'acceptance suite: 3 of 40 failed'" in status["message"]
    assert users.answered["a"] > 20
    assert users.answered["b"] == 0
    assert len(receiver.calls("/pre")) == 2  # one retry
    events = hook_events(client, "prehook")
    assert events and events[0]["data"]["status_code"] == 500
    assert events[0]["data"]["hook"] == "pre_rollout"
    # The on-rollback hook is told how it ended; its answer changes nothing.
    wait_until(client, "prehook", lambda _r: bool(receiver.calls("/back")), "on_rollback", 10)
    (told,) = receiver.calls("/back")
    assert told.body["hook"] == "on_rollback"
    assert told.body["phase"] == "rolled_back"
    assert told.body["outcome"] == "rolled_back"


@pytest.mark.parametrize(
    ("model", "on_failure", "phase"),
    [
        pytest.param("failing", "rollback", "rolled_back", id="rolls back by default"),
        pytest.param("pausing", "pause", "paused", id="pauses with on_failure: pause"),
    ],
)
def test_a_webhook_step_that_answers_500(
    client: Client, receiver: HookReceiver, model: str, on_failure: str, phase: str
) -> None:
    path = f"/load-test/{model}"
    receiver.answer(path, 500, "p99 342 ms > 200 ms")
    webhook = {
        "url": f"{receiver.url}{path}",
        "retries": 0,
        "timeout_s": 2,
        "on_failure": on_failure,
        "headers": {"Authorization": {"env": TOKEN_VARIABLE}, "X-Suite": "load"},
    }

    client.apply(
        spec(
            model,
            strategy="steps",
            steps=[{"set_weight": 20}, {"webhook": webhook}, {"set_weight": 100}],
        )
    )
    rollout = wait_until(
        client, model, lambda r: r["status"]["phase"] == phase, f"phase {phase}", 30
    )

    assert "webhook failed" in rollout["status"]["message"]
    assert "answered 500: 'p99 342 ms > 200 ms'" in rollout["status"]["message"]
    (call,) = receiver.calls(path)
    assert call.headers["Authorization"] == TOKEN
    assert call.headers["X-Suite"] == "load"
    body = call.body
    assert set(body) == PAYLOAD_FIELDS
    assert body["hook"] == "webhook"
    assert (body["model"], body["stable"], body["candidate"]) == (model, "a", "b")
    assert body["phase"] == "progressing"
    assert body["weight"] == 20
    assert body["step"]["index"] == 1
    assert body["step"]["number"] == 2
    assert body["step"]["description"].startswith("call webhook")
    assert isinstance(body["judgement"], dict)
    assert body["rollout_id"] == rollout["id"]
    # The credential is sent, never recorded.
    assert TOKEN not in str(client.events(model, limit=1000))
    if phase == "paused":
        client.rollback(model)


def test_a_confirm_hook_holds_promotion_until_it_answers_2xx(
    gateway: GatewayProcess, client: Client, receiver: HookReceiver
) -> None:
    receiver.answer("/confirm", 409, "waiting for the release manager")
    client.apply(
        spec(
            "confirmed",
            strategy="steps",
            steps=[
                {"set_weight": 20},
                {"confirm": {"url": f"{receiver.url}/confirm", "interval_s": 0.3}},
                {"set_weight": 100},
            ],
            hooks={"post_promotion": [{"url": f"{receiver.url}/promoted"}]},
        )
    )
    wait_for_step(client, "confirmed", 1, timeout_s=20)
    time.sleep(3)  # six controller ticks, ten polls

    held = client.rollout("confirmed")["status"]
    assert held["phase"] == "progressing"
    assert held["step_index"] == 1
    assert held["weight"] == 20
    polls = len(receiver.calls("/confirm"))
    assert polls >= 3
    waiting = hook_events(client, "confirmed")
    assert len(waiting) == 1  # one event for the answer, not one per poll
    assert "waiting for confirmation" in waiting[0]["message"]

    receiver.answer("/confirm", 200, "go")
    ended = wait_until_ended(client, "confirmed", timeout_s=20)

    assert ended["status"]["phase"] == "promoted"
    assert ended["status"]["message"].startswith("promoted: confirmed: ")
    # The post-promotion hook is told within a tick or two, and its call is an event.
    deadline = time.monotonic() + 10
    while not receiver.calls("/promoted") and time.monotonic() < deadline:
        time.sleep(0.1)
    (told,) = receiver.calls("/promoted")
    assert told.body["hook"] == "post_promotion"
    assert told.body["phase"] == "promoted"
    wait_until(
        client,
        "confirmed",
        lambda _r: any(
            e["data"].get("hook") == "post_promotion" for e in hook_events(client, "confirmed")
        ),
        "the post-promotion hook's event",
        10,
    )
