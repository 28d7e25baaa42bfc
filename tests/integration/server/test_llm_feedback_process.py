"""Satisfaction feedback and text comparison of shadows against a real gateway process,
its controller, and a real OpenAI-compatible judge process on loopback.

The versions are ``fake`` ones answering a fixed text, so that what the judge decides is
known in advance (the test judge prefers the longer answer)."""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from rollwise.client import Client
from support.gateway import FEEDBACK, OPERATOR, GatewayProcess, eventually, free_port
from support.openai_comparators import comparator_server, stats
from support.rollouts import CONTROLLER, all_ready, wait_until_ended

KEY_ENV = "ROLLWISE_TEST_JUDGE_KEY"
KEY = "sk-test-judge-key-9"


def _text_model(stable: str, candidate: str, comparator: dict[str, Any] | None) -> dict[str, Any]:
    model: dict[str, Any] = {
        "sticky_key": "header:X-User-Id",
        "stable": "a",
        "versions": {
            "a": {"backend": "fake", "label": stable},
            "b": {"backend": "fake", "label": candidate},
        },
    }
    if comparator is not None:
        model["comparator"] = comparator
    return model


def _judge(url: str) -> dict[str, Any]:
    return {"kind": "judge", "url": url, "model": "judge-1", "api_key_env": KEY_ENV}


@pytest.fixture(scope="module")
def judge_url() -> Iterator[str]:
    with comparator_server() as url:
        yield url


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, judge_url: str) -> Iterator[GatewayProcess]:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    config = {
        "store": "sqlite:///state.db",
        "server": {"flush_interval_s": 0.2, "routing_poll_interval_s": 0.2},
        "controller": dict(CONTROLLER),
        "models": {
            "rated": _text_model("a short answer", "a longer, better answer", None),
            "judged": _text_model("short", "a longer answer", _judge(judge_url)),
            "judged_worse": _text_model("a long stable answer", "short", _judge(judge_url)),
            "dead_judge": _text_model("x", "yy", {**_judge(dead), "timeout_s": 1}),
            "similar": _text_model(
                "The answer is 42.", "the answer is  42", {"kind": "similarity", "threshold": 0.9}
            ),
        },
    }
    os.environ[KEY_ENV] = KEY  # the gateway process inherits it
    try:
        process = GatewayProcess(tmp_path_factory.mktemp("llm-feedback"), config).start()
    finally:
        del os.environ[KEY_ENV]
    try:
        with Client(process.url, OPERATOR) as client:
            eventually(lambda: all_ready(client), timeout_s=60)
        yield process
    finally:
        process.stop()


def predict(gateway: GatewayProcess, model: str, user: str) -> httpx.Response:
    answer = httpx.post(
        f"{gateway.url}/models/{model}/predict",
        json={"inputs": [[1.0, 2.0]]},
        headers={"x-user-id": user},
    )
    assert answer.status_code == 200, answer.text
    return answer


def rate(
    gateway: GatewayProcess, model: str, body: dict[str, Any], token: str | None = FEEDBACK
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{gateway.url}/models/{model}/feedback", json=body, headers=headers)


def versions(gateway: GatewayProcess, model: str) -> dict[str, dict[str, Any]]:
    with Client(gateway.url, OPERATOR) as client:
        return {v["name"]: v for v in client.model(model, window_s=600)["versions"]}


def test_a_thumbs_up_is_taken_once_and_counted_for_the_version(gateway: GatewayProcess) -> None:
    rid = predict(gateway, "rated", "u1").headers["x-request-id"]
    answer = rate(gateway, "rated", {"request_id": rid, "satisfaction": True})
    assert answer.status_code == 200, answer.text
    assert answer.json()["versions"] == {"a/served": {"satisfaction": 1.0}}
    again = rate(gateway, "rated", {"request_id": rid, "satisfaction": False})
    assert again.status_code == 409, again.text
    rid2 = predict(gateway, "rated", "u2").headers["x-request-id"]
    assert rate(gateway, "rated", {"request_id": rid2, "satisfaction": 0.5}).status_code == 200

    def counted() -> bool:
        served = versions(gateway, "rated")["a"]["served"] or {}
        return served.get("satisfaction_count") == 2 and served.get("satisfaction") == 0.75

    eventually(counted)


def test_a_label_and_a_rating_may_come_together(gateway: GatewayProcess) -> None:
    rid = predict(gateway, "rated", "u5").headers["x-request-id"]
    answer = rate(
        gateway, "rated", {"request_id": rid, "label": "a short answer", "satisfaction": 0}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["versions"]["a/served"] == {
        "correct": 1,
        "count": 1,
        "abs_error": 0.0,
        "satisfaction": 0.0,
    }


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        pytest.param({"satisfaction": 1.5}, 422, r"'satisfaction' must be a number in \[0, 1\]",
                     id="above one"),
        pytest.param({"satisfaction": "good"}, 422, "'satisfaction' must be true/false",
                     id="a word"),
        pytest.param({"satisfaction": None}, 422, "'satisfaction'", id="null"),
        pytest.param({}, 422, "'label' is missing.*or a 'satisfaction'", id="neither"),
    ],
)  # fmt: skip
def test_bad_ratings_are_refused_naming_the_key(
    gateway: GatewayProcess, body: dict[str, Any], status: int, message: str
) -> None:
    rid = predict(gateway, "rated", "u3").headers["x-request-id"]
    answer = rate(gateway, "rated", {"request_id": rid, **body})
    assert answer.status_code == status, answer.text
    assert re.search(message, answer.json()["error"]), answer.text
    # Refused before anything was stored: a good rating for the same request is taken.
    assert rate(gateway, "rated", {"request_id": rid, "satisfaction": True}).status_code == 200


def test_ratings_need_a_feedback_token_and_a_known_request(gateway: GatewayProcess) -> None:
    rid = predict(gateway, "rated", "u4").headers["x-request-id"]
    assert (
        rate(gateway, "rated", {"request_id": rid, "satisfaction": True}, None).status_code == 401
    )
    unknown = rate(gateway, "rated", {"request_id": "nope", "satisfaction": True})
    assert unknown.status_code == 404, unknown.text


async def _users(
    gateway: GatewayProcess, model: str, likes: dict[str, float], n: int
) -> Counter[str]:
    """``n`` users ask once each and rate the answer: thumbs up with the chance ``likes``
    gives for the version that answered (seeded, so the run is repeatable)."""
    rng = random.Random(13)
    seen: Counter[str] = Counter()
    auth = {"authorization": f"Bearer {FEEDBACK}"}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:

        async def one(i: int) -> None:
            answer = await http.post(
                f"/models/{model}/predict",
                json={"inputs": [[1.0, 2.0]]},
                headers={"x-user-id": f"ab-user-{i}"},
            )
            assert answer.status_code == 200, answer.text
            version = answer.headers["x-rollwise-version"]
            seen[version] += 1
            body = {"request_id": answer.headers["x-request-id"],
                    "satisfaction": rng.random() < likes[version]}  # fmt: skip
            rated = await http.post(f"/models/{model}/feedback", json=body, headers=auth)
            assert rated.status_code == 200, rated.text

        for start in range(0, n, 8):
            await asyncio.gather(*(one(i) for i in range(start, min(n, start + 8))))
    return seen


def test_an_ab_test_on_satisfaction_picks_the_version_users_like_more(
    gateway: GatewayProcess,
) -> None:
    spec = {
        "model": "rated",
        "candidate": "b",
        "strategy": "abtest",
        "abtest": {"split": 50, "metric": "satisfaction", "mde": 0.2, "min_samples": 40},
    }
    with Client(gateway.url, OPERATOR) as client:
        client.apply(spec)
        seen: Counter[str] = Counter()
        # Users keep coming until the test decides: a fast machine sends a round in well
        # under a controller tick, before the split may even have started.
        deadline = time.monotonic() + 90.0
        rollout = client.rollout("rated")
        while rollout["status"]["phase"] in ("pending", "progressing"):
            assert time.monotonic() < deadline, f"no decision within 90 s: {rollout['status']}"
            seen += asyncio.run(_users(gateway, "rated", {"a": 0.3, "b": 0.85}, 120))
            time.sleep(0.2)
            rollout = client.rollout("rated")
    assert seen["b"] > 0
    assert rollout["status"]["phase"] == "promoted", rollout["status"]
    assert versions(gateway, "rated")["b"]["weight"] == 100


def _mirror_traffic(gateway: GatewayProcess, model: str, n: int) -> None:
    for i in range(n):
        answer = predict(gateway, model, f"m-{i}")
        assert answer.headers["x-rollwise-version"] == "a"


@pytest.mark.parametrize(
    ("model", "phase", "win_rate"),
    [
        pytest.param("judged", "validated", 1.0, id="longer candidate wins every pair"),
        pytest.param("judged_worse", "rolled_back", 0.0, id="shorter candidate loses every pair"),
    ],
)
def test_a_shadow_judged_by_a_model_reports_its_win_rate_and_is_gated_on_it(
    gateway: GatewayProcess, judge_url: str, model: str, phase: str, win_rate: float
) -> None:
    spec = {
        "model": model,
        "candidate": "b",
        "strategy": "shadow",
        "shadow": {"mirror": 100},
        "gates": [{"metric": "win_rate", "min": 0.5, "min_samples": 20}],
    }
    with Client(gateway.url, OPERATOR) as client:
        client.apply(spec)
        for _ in range(20):
            _mirror_traffic(gateway, model, 15)
            if client.rollout(model)["status"]["phase"] not in ("pending", "progressing"):
                break
        rollout = wait_until_ended(client, model, timeout_s=30)
    assert rollout["status"]["phase"] == phase, rollout["status"]
    shadow = versions(gateway, model)["b"]["shadow"]
    assert shadow["win_rate"] == win_rate
    assert shadow["judged"] >= 20 and shadow["ties"] == 0
    interval = shadow["win_rate_interval"]
    assert interval["low"] <= win_rate <= interval["high"] and interval["level"] == 0.95
    assert interval["high"] - interval["low"] < 0.25
    # The judge was called with the configured key, and never with a rollwise token.
    assert f"Bearer {KEY}" in stats(judge_url)["authorization"]


def test_a_dead_judge_delays_no_answer_and_its_drops_are_counted(gateway: GatewayProcess) -> None:
    with Client(gateway.url, OPERATOR) as client:
        client.set_routing("dead_judge", {"a": 100}, {"b": 100})
    eventually(lambda: predict(gateway, "dead_judge", "probe").status_code == 200)
    _mirror_traffic(gateway, "dead_judge", 30)

    def dropped() -> bool:
        shadow = versions(gateway, "dead_judge")["b"]["shadow"] or {}
        return shadow.get("compare_dropped", 0) >= 25

    eventually(dropped, timeout_s=30)
    shadow = versions(gateway, "dead_judge")["b"]["shadow"]
    assert shadow["judged"] == 0 and shadow["errors"] == 0


def test_a_similarity_comparator_feeds_shadow_agreement(gateway: GatewayProcess) -> None:
    with Client(gateway.url, OPERATOR) as client:
        client.set_routing("similar", {"a": 100}, {"b": 100})
    _mirror_traffic(gateway, "similar", 20)

    def agreed() -> bool:
        shadow = versions(gateway, "similar")["b"]["shadow"] or {}
        return shadow.get("compared", 0) >= 15

    eventually(agreed, timeout_s=20)
    assert versions(gateway, "similar")["b"]["shadow"]["agreement"] == 1.0


def test_a_rating_counts_for_the_answer_seen_not_for_a_shadows(gateway: GatewayProcess) -> None:
    with Client(gateway.url, OPERATOR) as client:
        client.set_routing("similar", {"a": 100}, {"b": 100})
    _mirror_traffic(gateway, "similar", 1)

    def compared() -> int:
        return int((versions(gateway, "similar")["b"]["shadow"] or {}).get("compared", 0))

    eventually(lambda: compared() >= 1)
    before = compared()
    rid = predict(gateway, "similar", "rater").headers["x-request-id"]
    # The shadow's answer is logged for the request when it is compared.
    eventually(lambda: compared() > before)
    body = {"request_id": rid, "label": "The answer is 42.", "satisfaction": True}
    answer = rate(gateway, "similar", body)
    assert answer.status_code == 200, answer.text
    # The label grades both answers; the rating only the one the user saw.
    assert answer.json()["versions"] == {
        "a/served": {"correct": 1, "count": 1, "abs_error": 0.0, "satisfaction": 1.0},
        "b/shadow": {"correct": 0, "count": 1, "abs_error": 0.0},
    }


def test_feedback_bodies_are_json_objects(gateway: GatewayProcess) -> None:
    answer = httpx.post(
        f"{gateway.url}/models/rated/feedback",
        content=orjson.dumps([1]),
        headers={"authorization": f"Bearer {FEEDBACK}", "content-type": "application/json"},
    )
    assert answer.status_code in (400, 422)
