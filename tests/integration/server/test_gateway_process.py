"""The gateway as a real process: routing, shadows, refusals, feedback, restarts."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from support.gateway import (
    FEEDBACK,
    OPERATOR,
    VIEWER,
    GatewayProcess,
    eventually,
    gateway_config,
)

SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]


@pytest.fixture(scope="module")
def gateway(iris_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("gateway")
    process = GatewayProcess(directory, gateway_config(iris_dir, mirror_concurrency=8)).start()
    yield process
    process.stop()


@pytest.fixture
def ops(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with gateway.client(OPERATOR) as client:
        yield client


def route(
    client: httpx.Client, model: str, weights: dict[str, int], mirrors: dict[str, int] | None = None
) -> None:
    response = client.put(
        f"/api/v1/models/{model}/routing", json={"weights": weights, "mirrors": mirrors or {}}
    )
    assert response.status_code == 200, response.text


def oip_body(rows: list[list[float]]) -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": [len(rows), 4], "datatype": "FP32", "data": rows}]}


async def versions_for_users(url: str, model: str, users: list[str]) -> dict[str, str]:
    """The version that answered each user, with 32 requests in flight."""
    result: dict[str, str] = {}
    async with aiohttp.ClientSession(url) as client:
        semaphore = asyncio.Semaphore(32)

        async def one(user: str) -> None:
            async with (
                semaphore,
                client.post(
                    f"/models/{model}/predict",
                    json={"inputs": [SETOSA]},
                    headers={"x-user-id": user},
                ) as response,
            ):
                assert response.status == 200, await response.text()
                result[user] = response.headers["x-rollwise-version"]

        await asyncio.gather(*(one(user) for user in users))
    return result


def test_health_and_metadata(gateway: GatewayProcess) -> None:
    assert httpx.get(f"{gateway.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{gateway.url}/v2/health/ready").status_code == 200
    meta = httpx.get(f"{gateway.url}/v2/models/iris").json()
    assert meta["name"] == "iris"
    assert meta["platform"] == "sklearn"
    assert meta["inputs"], meta
    assert httpx.get(f"{gateway.url}/v2/models/iris/ready").status_code == 200
    assert httpx.get(f"{gateway.url}/v2/models/iris/versions/missing/ready").status_code == 503
    assert httpx.get(f"{gateway.url}/v2/models/nope").status_code == 404


def test_oip_inference_answers_with_version_and_request_id(
    gateway: GatewayProcess, ops: httpx.Client
) -> None:
    route(ops, "iris", {"v1": 100})
    response = httpx.post(f"{gateway.url}/v2/models/iris/infer", json=oip_body([SETOSA, VIRGINICA]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert response.headers["x-rollwise-version"] == "v1"
    assert response.headers["x-request-id"] == body["id"]
    assert (body["model_name"], body["model_version"]) == ("iris", "v1")
    label = next(o for o in body["outputs"] if o["name"] == "label")
    assert label["data"] == [0, 2]


def test_plain_predict_and_the_onnx_version_agree(
    gateway: GatewayProcess, ops: httpx.Client
) -> None:
    route(ops, "iris", {"v2": 100})
    response = httpx.post(
        f"{gateway.url}/models/iris/predict", json={"inputs": [SETOSA, VIRGINICA]}
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-rollwise-version"] == "v2"
    assert response.json()["outputs"] == [0, 2]
    route(ops, "iris", {"v1": 100})


def test_a_caller_supplied_request_id_is_kept(gateway: GatewayProcess) -> None:
    response = httpx.post(
        f"{gateway.url}/models/iris/predict",
        json={"inputs": [SETOSA]},
        headers={"x-request-id": "req-42"},
    )
    assert response.headers["x-request-id"] == "req-42"
    assert response.json()["request_id"] == "req-42"


def test_ten_thousand_keyed_requests_split_within_two_points(
    gateway: GatewayProcess, ops: httpx.Client
) -> None:
    route(ops, "echo", {"a": 90, "b": 10})
    users = [f"user-{i}" for i in range(10_000)]
    chosen = asyncio.run(versions_for_users(gateway.url, "echo", users))
    share_b = Counter(chosen.values())["b"] / len(users)
    assert abs(share_b - 0.10) <= 0.02, share_b


def test_the_same_key_always_gets_the_same_version(
    gateway: GatewayProcess, ops: httpx.Client
) -> None:
    route(ops, "echo", {"a": 50, "b": 30, "c": 20})
    users = [f"same-{i}" for i in range(200)]
    first = asyncio.run(versions_for_users(gateway.url, "echo", users))
    for _ in range(3):
        assert asyncio.run(versions_for_users(gateway.url, "echo", users)) == first
    assert set(first.values()) == {"a", "b", "c"}


def test_raising_the_candidate_from_10_to_30_keeps_its_users(
    gateway: GatewayProcess, ops: httpx.Client
) -> None:
    users = [f"grow-{i}" for i in range(3000)]
    route(ops, "echo", {"a": 90, "b": 10})
    before = asyncio.run(versions_for_users(gateway.url, "echo", users))
    route(ops, "echo", {"a": 70, "b": 30})
    after = asyncio.run(versions_for_users(gateway.url, "echo", users))
    early = [u for u, v in before.items() if v == "b"]
    assert len(early) > 150
    assert all(after[u] == "b" for u in early)
    assert 0.27 <= Counter(after.values())["b"] / len(users) <= 0.33


def test_each_version_counts_its_distinct_users_since_its_routing_changed(
    gateway: GatewayProcess, ops: httpx.Client
) -> None:
    def counted() -> Counter[str]:
        status = ops.get("/api/v1/models/echo", params={"window_s": 600}).json()
        return Counter({v["name"]: (v["served"] or {}).get("users", 0) for v in status["versions"]})

    route(ops, "echo", {"a": 60, "b": 40})
    before = counted()
    users = [f"count-{i}" for i in range(300)]
    chosen: dict[str, str] = {}
    for _ in range(3):  # every user three times: counted once
        chosen = asyncio.run(versions_for_users(gateway.url, "echo", users))
    expected = Counter(chosen.values())
    assert set(expected) == {"a", "b"}
    eventually(lambda: counted() - before == expected)
    # New weights: every user is counted again, once, under the new routing.
    route(ops, "echo", {"a": 50, "b": 50})
    asyncio.run(versions_for_users(gateway.url, "echo", users))
    eventually(lambda: (counted() - before).total() == 2 * len(users))


def test_requests_without_a_key_are_split_at_random(
    gateway: GatewayProcess, ops: httpx.Client
) -> None:
    route(ops, "echo", {"a": 50, "b": 50})
    with httpx.Client(base_url=gateway.url) as client:
        seen = Counter(
            client.post("/models/echo/predict", json={"inputs": [[1.0]]}).headers[
                "x-rollwise-version"
            ]
            for _ in range(200)
        )
    assert seen["a"] > 60 and seen["b"] > 60


def shadow_of(ops: httpx.Client, version: str) -> dict[str, Any]:
    versions = ops.get("/api/v1/models/iris").json()["versions"]
    return next(v for v in versions if v["name"] == version)


def test_slow_and_failing_shadows_never_delay_or_fail_the_reply(
    gateway: GatewayProcess, ops: httpx.Client
) -> None:
    route(ops, "iris", {"v1": 100}, {"slow": 100, "broken": 100})
    with httpx.Client(base_url=gateway.url) as client:
        for _ in range(40):
            response = client.post("/models/iris/predict", json={"inputs": [SETOSA]})
            assert response.status_code == 200, response.text
            assert response.headers["x-rollwise-version"] == "v1"
    # Every reply is back while the slow shadow (3 s per answer) has not finished once:
    # no reply waited for it.
    assert (shadow_of(ops, "slow")["shadow"] or {}).get("requests", 0) == 0
    served = shadow_of(ops, "v1")["served"]
    assert served["requests"] >= 40 and served["errors"] == 0

    eventually(lambda: (shadow_of(ops, "slow")["shadow"] or {}).get("requests", 0) >= 1)
    slow, broken = shadow_of(ops, "slow")["shadow"], shadow_of(ops, "broken")["shadow"]
    assert broken["errors"] == broken["requests"] > 0
    # At most 8 mirrors per shadow run at once, so the slow one sheds most of them,
    # and only its own: the broken shadow answers fast and drops none.
    assert slow["dropped"] > 0
    assert broken.get("dropped", 0) == 0
    route(ops, "iris", {"v1": 100})


def test_a_shadow_is_compared_with_the_served_answer(
    gateway: GatewayProcess, ops: httpx.Client
) -> None:
    route(ops, "iris", {"v1": 100}, {"v2": 100})
    with httpx.Client(base_url=gateway.url) as client:
        for row in [SETOSA, VIRGINICA] * 10:
            assert client.post("/models/iris/predict", json={"inputs": [row]}).status_code == 200
    eventually(lambda: (shadow_of(ops, "v2")["shadow"] or {}).get("compared", 0) >= 20)
    shadow = shadow_of(ops, "v2")["shadow"]
    assert shadow["compared"] >= 20
    assert shadow["agreement"] == 1.0
    route(ops, "iris", {"v1": 100})


@pytest.mark.parametrize(
    ("path", "content", "status", "message"),
    [
        pytest.param("/v2/models/iris/infer", b"{oops", 400, "not valid JSON", id="malformed body"),
        pytest.param(
            "/v2/models/iris/infer",
            b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]}]}',
            422,
            "needs 4 values, got 3",
            id="wrong shape",
        ),
        pytest.param(
            "/models/iris/predict",
            b'{"inputs": [[1, 2, 3]]}',
            422,
            "4",
            id="wrong number of features",
        ),
        pytest.param(
            "/models/iris/predict", b"x" * (10 * 1024 * 1024), 413, "limit", id="a 10 MB body"
        ),
        pytest.param(
            "/models/nope/predict",
            b'{"inputs": [[1, 2, 3, 4]]}',
            404,
            "unknown model 'nope'",
            id="unknown model",
        ),
        pytest.param(
            "/v2/models/nope/infer", b'{"inputs": []}', 422, "non-empty", id="empty inputs"
        ),
    ],
)
def test_bad_requests_get_the_right_code_and_message(
    gateway: GatewayProcess, path: str, content: bytes, status: int, message: str
) -> None:
    response = httpx.post(
        f"{gateway.url}{path}", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert response.headers["x-request-id"]


def test_a_failing_version_gets_502_naming_it_and_it_is_counted(
    gateway: GatewayProcess, ops: httpx.Client
) -> None:
    route(ops, "iris", {"broken": 100}, {"v2": 100})
    response = httpx.post(f"{gateway.url}/models/iris/predict", json={"inputs": [SETOSA]})
    assert response.status_code == 502
    assert response.json()["version"] == "broken"
    assert "broken" in response.json()["error"]
    assert response.headers["x-rollwise-version"] == "broken"
    broken = shadow_of(ops, "broken")
    assert broken["served"]["errors"] >= 1
    # The shadow still saw the request, with no served answer to compare with.
    eventually(lambda: (shadow_of(ops, "v2")["shadow"] or {}).get("requests", 0) >= 1)
    route(ops, "iris", {"v1": 100})


def test_a_version_that_failed_to_load_is_reported_and_gets_no_traffic(
    gateway: GatewayProcess, ops: httpx.Client
) -> None:
    versions = {v["name"]: v for v in ops.get("/api/v1/models/iris").json()["versions"]}
    assert versions["missing"]["health"] == "failed"
    assert "weights file is corrupt" in versions["missing"]["reason"]
    refused = ops.put("/api/v1/models/iris/routing", json={"weights": {"v1": 50, "missing": 50}})
    assert refused.status_code == 409
    assert "not ready" in refused.json()["error"]
    assert (
        httpx.post(f"{gateway.url}/models/iris/predict", json={"inputs": [SETOSA]}).status_code
        == 200
    )


def test_forcing_a_version_needs_an_operator_token(gateway: GatewayProcess) -> None:
    url = f"{gateway.url}/models/iris/predict"
    body = {"inputs": [SETOSA]}
    assert httpx.post(url, json=body, headers={"x-rollwise-version": "v2"}).status_code == 401
    viewer = {"x-rollwise-version": "v2", "authorization": f"Bearer {VIEWER}"}
    assert httpx.post(url, json=body, headers=viewer).status_code == 403
    operator = {"x-rollwise-version": "v2", "authorization": f"Bearer {OPERATOR}"}
    response = httpx.post(url, json=body, headers=operator)
    assert response.status_code == 200
    assert response.headers["x-rollwise-version"] == "v2"
    versioned = httpx.post(
        f"{gateway.url}/v2/models/iris/versions/v2/infer",
        json=oip_body([SETOSA]),
        headers={"authorization": f"Bearer {OPERATOR}"},
    )
    assert versioned.headers["x-rollwise-version"] == "v2"


def test_the_control_api_needs_tokens_with_the_right_role(gateway: GatewayProcess) -> None:
    assert httpx.get(f"{gateway.url}/api/v1/models").status_code == 401
    bad = httpx.get(f"{gateway.url}/api/v1/models", headers={"authorization": "Bearer wrong-token"})
    assert bad.status_code == 401
    viewer = {"authorization": f"Bearer {VIEWER}"}
    assert httpx.get(f"{gateway.url}/api/v1/models", headers=viewer).status_code == 200
    put = httpx.put(
        f"{gateway.url}/api/v1/models/iris/routing", json={"weights": {"v1": 100}}, headers=viewer
    )
    assert put.status_code == 403
    assert "operator" in put.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        pytest.param({"weights": {"v1": 90, "v2": 20}}, 422, "sum to 100", id="weights over 100"),
        pytest.param(
            {"weights": {"v1": 100, "v7": 0}}, 404, "no version 'v7'", id="unknown version"
        ),
        pytest.param({"weights": {"v1": "all"}}, 422, "weights.v1", id="not a number"),
        pytest.param({"weight": {"v1": 100}}, 422, "weight", id="misspelt key"),
        pytest.param({"weights": {"v1": True}}, 422, "weights.v1", id="a boolean weight"),
        pytest.param({"weights": {"v1": "100"}}, 422, "weights.v1", id="a weight as text"),
        pytest.param({"weights": {"v1": 100.0}}, 422, "weights.v1", id="a fractional type"),
    ],
)
def test_bad_routing_is_refused_and_leaves_the_routing_whole(
    ops: httpx.Client, body: dict[str, object], status: int, message: str
) -> None:
    route(ops, "iris", {"v1": 100})
    response = ops.put("/api/v1/models/iris/routing", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    weights = {v["name"]: v["weight"] for v in ops.get("/api/v1/models/iris").json()["versions"]}
    assert weights["v1"] == 100


def test_feedback_is_joined_to_the_prediction(gateway: GatewayProcess, ops: httpx.Client) -> None:
    route(ops, "iris", {"v1": 100})
    with gateway.client(FEEDBACK) as client:
        ids = [
            client.post("/models/iris/predict", json={"inputs": [row]}).headers["x-request-id"]
            for row in [SETOSA, VIRGINICA]
        ]
        misfit = client.post("/models/iris/feedback", json={"request_id": ids[0], "label": [0, 1]})
        assert misfit.status_code == 422
        assert "the prediction had 1 rows" in misfit.json()["error"]
        # The refused label was not stored: the corrected one is taken.
        right = client.post("/models/iris/feedback", json={"request_id": ids[0], "label": 0})
        assert right.status_code == 200, right.text
        assert right.json()["versions"]["v1/served"]["correct"] == 1
        wrong = client.post("/models/iris/feedback", json={"request_id": ids[1], "label": 0})
        assert wrong.json()["versions"]["v1/served"]["correct"] == 0
        again = client.post("/models/iris/feedback", json={"request_id": ids[0], "label": 0})
        assert again.status_code == 409
        unknown = client.post(
            "/models/iris/feedback", json={"request_id": "no-such-id", "label": 0}
        )
        assert unknown.status_code == 404
        assert "unknown or expired request id" in unknown.json()["error"]
    v1 = shadow_of(ops, "v1")
    assert v1["served"]["feedback"] >= 2
    assert 0 < v1["served"]["accuracy"] < 1


def test_feedback_is_found_after_the_prediction_was_flushed_to_the_store(
    iris_dir: Path, tmp_path: Path
) -> None:
    config = gateway_config(iris_dir, prediction_cache_size=0)
    process = GatewayProcess(tmp_path, config).start()
    try:
        request_id = httpx.post(
            f"{process.url}/models/iris/predict", json={"inputs": [SETOSA]}
        ).headers["x-request-id"]
        body = {"request_id": request_id, "label": 0}

        def joined() -> bool:
            # 404 until the prediction is flushed to the store (nothing is kept in memory).
            response = httpx.post(
                f"{process.url}/models/iris/feedback",
                json=body,
                headers={"authorization": f"Bearer {FEEDBACK}"},
            )
            assert response.status_code in (200, 404), response.text
            return response.status_code == 200

        eventually(joined)
    finally:
        process.stop()


def test_metrics_are_exposed_for_prometheus(gateway: GatewayProcess) -> None:
    httpx.post(f"{gateway.url}/models/iris/predict", json={"inputs": [SETOSA]})
    text = httpx.get(f"{gateway.url}/metrics").text
    assert 'rollwise_requests_total{model="iris",role="served",version="v1"}' in text
    assert "rollwise_request_duration_seconds_bucket" in text
    assert 'rollwise_version_ready{model="iris",version="missing"} 0.0' in text


def test_events_record_routing_changes(ops: httpx.Client) -> None:
    route(ops, "echo", {"a": 80, "b": 20})
    events = ops.get("/api/v1/events", params={"model": "echo", "limit": 1000}).json()["events"]
    last = events[-1]
    assert last["kind"] == "routing.changed"
    assert last["data"]["weights"] == {"a": 80, "b": 20}
    assert last["actor"] == "ops"


def test_unknown_endpoints_and_methods_get_json_errors(gateway: GatewayProcess) -> None:
    missing = httpx.get(f"{gateway.url}/no/such/path")
    assert missing.status_code == 404
    assert missing.json() == {"error": "no such endpoint: GET /no/such/path"}
    wrong = httpx.delete(f"{gateway.url}/api/v1/models")
    assert wrong.status_code == 405
    assert "DELETE is not allowed" in wrong.json()["error"]


def test_the_openapi_document_describes_the_api(gateway: GatewayProcess) -> None:
    doc = httpx.get(f"{gateway.url}/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/api/v1/models/{model}/routing" in doc["paths"]
    assert "/v2/models/{model}/infer" in doc["paths"]
    assert {"get", "post"} <= set(doc["paths"]["/api/v1/rollouts"])
    assert "post" in doc["paths"]["/api/v1/rollouts/{model}/{action}"]


def test_routing_survives_a_restart(iris_dir: Path, tmp_path: Path) -> None:
    config = gateway_config(iris_dir)
    first = GatewayProcess(tmp_path, config).start()
    try:
        with first.client() as client:
            route(client, "iris", {"v1": 70, "v2": 30}, {"slow": 5})
    finally:
        first.stop()
    second = GatewayProcess(tmp_path, config).start()
    try:
        with second.client() as client:
            versions = {v["name"]: v for v in client.get("/api/v1/models/iris").json()["versions"]}
        assert (versions["v1"]["weight"], versions["v2"]["weight"], versions["slow"]["mirror"]) == (
            70,
            30,
            5,
        )
    finally:
        second.stop()


def test_a_reused_request_id_joins_feedback_to_its_latest_request(
    gateway: GatewayProcess, ops: httpx.Client
) -> None:
    route(ops, "iris", {"v1": 100})
    with gateway.client(FEEDBACK) as client:
        for row in [SETOSA, SETOSA, VIRGINICA]:
            answer = client.post(
                "/models/iris/predict", json={"inputs": [row]}, headers={"x-request-id": "reused-1"}
            )
            assert answer.headers["x-request-id"] == "reused-1"
        joined = client.post("/models/iris/feedback", json={"request_id": "reused-1", "label": 2})
    assert joined.status_code == 200, joined.text
    assert joined.json()["versions"] == {"v1/served": {"correct": 1, "count": 1, "abs_error": 0.0}}
