"""``GET /api/v1/models/{m}/series`` of a real gateway: the requests and labels sent show
up in its steps (before and after a flush), routing and rollout changes as marks, drift
between two versions that answer differently, and its refusals.

A gateway started in-process on a SQLite store (controller off, flushes only when the
test asks), with fake versions, spoken to over ``httpx.ASGITransport`` with tokens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from rollwise.config import parse_config, parse_tokens
from rollwise.runtime.gateway import Gateway
from rollwise.server.auth import Authenticator
from rollwise.server.control import build_control_app
from rollwise.server.dataplane import DataPlane
from support.gateway import FEEDBACK, OPERATOR, TOKENS, VIEWER

CONFIG = {
    "store": "sqlite:///state.db",
    # Flushed when the test says so: what is read before that is the unflushed window.
    "server": {"flush_interval_s": 60, "routing_poll_interval_s": 60},
    "controller": {"enabled": False},
    "models": {
        "m": {
            "sticky_key": "header:X-User-Id",
            "stable": "a",
            "labels": [0, 1],
            "versions": {
                "a": {"backend": "fake", "label": 0},
                "b": {"backend": "fake", "label": 1},
            },
        }
    },
}
AS_OPERATOR = {"authorization": f"Bearer {OPERATOR}"}
AS_VIEWER = {"authorization": f"Bearer {VIEWER}"}
AS_LABELLER = {"authorization": f"Bearer {FEEDBACK}"}

Scenario = Callable[[Gateway, httpx.AsyncClient], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario) -> None:
    async def main() -> None:
        gateway = Gateway(parse_config(CONFIG, base_dir=tmp_path, environ={}))
        auth = Authenticator(parse_tokens(TOKENS, "test"))
        app = DataPlane(gateway, auth, build_control_app(gateway, auth))
        await gateway.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
                for _ in range(200):
                    ready = await c.get("/v2/models/m/versions/b/ready")
                    if ready.status_code == 200:
                        break
                    await asyncio.sleep(0.02)
                await scenario(gateway, c)
        finally:
            await gateway.stop()

    asyncio.run(main())


async def predict(client: httpx.AsyncClient, n: int, user: str) -> list[tuple[str, str]]:
    """``n`` predictions from users ``{user}-0..``: (request id, version) of each."""
    answers = []
    for i in range(n):
        response = await client.post(
            "/models/m/predict", json={"inputs": [[1.0, 2.0]]}, headers={"x-user-id": f"{user}-{i}"}
        )
        assert response.status_code == 200, response.text
        answers.append((response.headers["x-request-id"], response.headers["x-rollwise-version"]))
    return answers


async def series(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/models/m/series", params=params, headers=AS_VIEWER)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def seconds(body: dict[str, Any]) -> list[float]:
    """How long each step has lasted: the last one until ``until_s``, at least 1 s."""
    step_s = body["step_s"]
    last = min(step_s, max(1.0, body["until_s"] - body["times_s"][-1]))
    return [float(step_s)] * (len(body["times_s"]) - 1) + [last]


def requests_of(body: dict[str, Any], version: str, role: str = "served") -> int:
    rates = body["versions"][version][role]["requests_per_s"]
    return round(sum(rate * s for rate, s in zip(rates, seconds(body), strict=True)))


def test_the_series_counts_what_was_sent_and_marks_the_routing_change(tmp_path: Path) -> None:
    async def scenario(gateway: Gateway, client: httpx.AsyncClient) -> None:
        sent = await predict(client, 30, "first")
        assert {version for _, version in sent} == {"a"}
        # 20 right (a answers 0), 10 wrong.
        for index, (request_id, _) in enumerate(sent):
            label = {"request_id": request_id, "label": 0 if index < 20 else 1}
            answer = await client.post("/models/m/feedback", json=label, headers=AS_LABELLER)
            assert answer.status_code == 200, answer.text

        unflushed = await series(client)
        await gateway.telemetry.flush()
        body = await series(client)
        for read in (unflushed, body):
            assert requests_of(read, "a") == 30
            served = read["versions"]["a"]["served"]
            assert sum(served["feedback"]) == 30
            assert list(read["versions"]) == ["a"] and list(read["versions"]["a"]) == ["served"]

        assert body["model"] == "m" and body["window_s"] == 900 and body["step_s"] == 5
        times = body["times_s"]
        assert times == sorted(times) and all(t % 5 == 0 for t in times)
        assert times[-1] <= body["until_s"] < times[-1] + 5
        assert times[0] <= body["until_s"] - 900
        served = body["versions"]["a"]["served"]
        for values in served.values():
            assert len(values) == len(times)
        labelled = [i for i, n in enumerate(served["feedback"]) if n]
        right = sum(served["accuracy"][i] * served["feedback"][i] for i in labelled)
        assert round(right) == 20
        for i in labelled:
            assert served["accuracy_low"][i] <= served["accuracy"][i] <= served["accuracy_high"][i]
            assert served["error_rate"][i] == 0.0
            assert served["latency_p50_ms"][i] is not None
        # Steps without requests: a rate of 0, no error rate, no latency, no accuracy.
        idle = next(i for i, rate in enumerate(served["requests_per_s"]) if rate == 0)
        assert served["error_rate"][idle] is None and served["latency_p99_ms"][idle] is None
        assert served["accuracy"][idle] is None and served["feedback"][idle] == 0
        assert body["drift"] == {}
        # The gateway's first start wrote the model's first routing.
        [first] = body["marks"]
        assert first["kind"] == "routing.initialized" and first["version"] is None
        assert (
            first["text"] == "routing: model m has no stored routing: 100 % on its stable version a"
        )

        routed = await client.put(
            "/api/v1/models/m/routing", json={"weights": {"a": 50, "b": 50}}, headers=AS_OPERATOR
        )
        assert routed.status_code == 200, routed.text
        more = await predict(client, 40, "second")
        await gateway.telemetry.flush()
        after = await series(client)
        by_version = {v: sum(1 for _, got in more if got == v) for v in ("a", "b")}
        assert by_version["b"] > 0
        assert requests_of(after, "a") == 30 + by_version["a"]
        assert requests_of(after, "b") == by_version["b"]
        [_, routing] = after["marks"]
        assert routing["kind"] == "routing.changed" and routing["version"] is None
        assert routing["text"] == "routing set by ops: weights a=50, b=50"
        assert times[0] <= routing["at_s"] <= after["until_s"]

    run(tmp_path, scenario)


def test_drift_and_rollout_marks_show_a_candidate_that_answers_otherwise(tmp_path: Path) -> None:
    async def scenario(gateway: Gateway, client: httpx.AsyncClient) -> None:
        spec = {
            "model": "m",
            "candidate": "b",
            "strategy": "steps",
            "steps": [{"set_weight": 50}, {"pause": {}}, {"set_weight": 100}],
        }
        # All 400 answers must fall in one step of a day: not sent across midnight UTC.
        until_midnight_s = 86400 - time.time() % 86400
        if until_midnight_s < 30:
            await asyncio.sleep(until_midnight_s + 1)
        started = await client.post("/api/v1/rollouts", json=spec, headers=AS_OPERATOR)
        assert started.status_code == 201, started.text
        await predict(client, 400, "user")
        await gateway.telemetry.flush()
        body = await series(client, window_s=86400, step_s=86400)
        assert set(body["versions"]) == {"a", "b"}
        [psi] = [value for value in body["drift"]["b"] if value is not None]
        assert psi > 1.0  # a answers 0 and b answers 1: as far apart as outputs get
        marks = body["marks"]
        kinds = [m["kind"] for m in marks]
        assert kinds[:3] == ["routing.initialized", "rollout.started", "rollout.step"]
        assert {m["version"] for m in marks if m["kind"].startswith("rollout.")} == {"b"}
        assert all("\n" not in m["text"] and m["text"] for m in marks)

    run(tmp_path, scenario)


def test_the_series_needs_a_token_a_known_model_and_a_step_within_the_limit(
    tmp_path: Path,
) -> None:
    async def scenario(gateway: Gateway, client: httpx.AsyncClient) -> None:
        anonymous = await client.get("/api/v1/models/m/series")
        assert anonymous.status_code == 401, anonymous.text
        assert "viewer role" in anonymous.json()["error"]

        unknown = await client.get("/api/v1/models/nope/series", headers=AS_VIEWER)
        assert unknown.status_code == 404, unknown.text
        assert "unknown model 'nope'" in unknown.json()["error"]

        refusals = {
            "step_s=0": "query parameter step_s=0 must be within 1..",
            "step_s=ten": "query parameter step_s='ten' is not a whole number",
            "window_s=3600&step_s=3": (
                "query parameter step_s=3 cuts window_s=3600 into 1200 steps, over the "
                "limit of 1000; use step_s=4 or more"
            ),
            "window_s=0": "query parameter window_s=0 must be within 1..",
            "window_s=604801": "window_s=604801 is over the limit of 604800 s (7 days)",
        }
        for query, message in refusals.items():
            refused = await client.get(f"/api/v1/models/m/series?{query}", headers=AS_VIEWER)
            assert refused.status_code == 422, (query, refused.text)
            assert message in refused.json()["error"], (query, refused.text)

        longest = await series(client, window_s=604800)
        assert longest["step_s"] == 3600 and len(longest["times_s"]) <= 169
        finest = await series(client, window_s=1000, step_s=1)
        assert len(finest["times_s"]) in (1000, 1001)

    run(tmp_path, scenario)
