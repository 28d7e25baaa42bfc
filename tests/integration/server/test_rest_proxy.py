"""``rest`` versions behind a real gateway: two real REST services with different JSON
shapes (``support.rest_services``, each a uvicorn process) and ``rollwise serve`` in
front of them, all talking over loopback.

The canary runs under traffic and every answer is compared byte for byte with what the
service itself answers; the shadow's agreement is compared with the disagreement the two
services are built to have; what the gateway counted is read from its ``/metrics``.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rollwise.client import Client, ClientError
from support.gateway import OPERATOR, VIEWER, GatewayProcess, eventually
from support.rest_services import RestService, features
from support.rollouts import wait_until_ended

MAX_BODY = 256 * 1024
TORCHSERVE_PATH = "$.predictions[*].label"
SAGEMAKER_PATH = "$.outputs.classes"


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RestService]]:
    directory = tmp_path_factory.mktemp("rest-services")
    started = {shape: RestService(shape, directory) for shape in ("torchserve", "sagemaker")}
    try:
        for service in started.values():
            service.start()
        yield started
    finally:
        for service in started.values():
            service.stop()


def shaped(services: dict[str, RestService], *, paths: bool = True) -> dict[str, Any]:
    """v1: the TorchServe-style service at /predictions/iris; v2: the SageMaker-style one
    at /invocations; both read through their output_path when ``paths``."""
    torchserve, sagemaker = services["torchserve"], services["sagemaker"]
    v1: dict[str, Any] = {
        "backend": "rest",
        "url": f"{torchserve.url}/predictions/iris",
        "health_path": "/ping",
    }
    v2: dict[str, Any] = {"backend": "rest", "url": f"{sagemaker.url}/invocations"}
    if paths:
        v1["output_path"] = TORCHSERVE_PATH
        v2["output_path"] = SAGEMAKER_PATH
    return {"stable": "v1", "sticky_key": "header:X-User-Id", "versions": {"v1": v1, "v2": v2}}


@pytest.fixture(scope="module")
def gateway(
    services: dict[str, RestService], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    torchserve, sagemaker = services["torchserve"], services["sagemaker"]
    config = {
        "store": "sqlite:///state.db",
        "server": {
            "flush_interval_s": 0.5,
            "routing_poll_interval_s": 0.5,
            "max_body_bytes": MAX_BODY,
        },
        "controller": {"interval_s": 0.5, "settle_s": 1.0, "lease_ttl_s": 3},
        "models": {
            "canary": shaped(services),
            "shadowed": shaped(services),
            "blind": shaped(services, paths=False),
            "app": {
                "stable": "a",
                "sticky_key": "field:user",
                "versions": {
                    "a": {"backend": "rest", "url": torchserve.url, "timeout_s": 1},
                    "b": {"backend": "rest", "url": sagemaker.url, "timeout_s": 1},
                },
            },
            # No sticky key: a body is passed on as it arrives, never read whole first.
            "stream": {
                "stable": "a",
                "versions": {"a": {"backend": "rest", "url": torchserve.url}},
            },
            "plain": {"stable": "v1", "versions": {"v1": {"backend": "fake", "label": 1}}},
        },
    }
    process = GatewayProcess(tmp_path_factory.mktemp("rest-gateway"), config).start()
    try:
        with process.client() as client:

            def every_version_ready() -> bool:
                models = client.get("/api/v1/models").json()["models"]
                return all(v["health"] == "ready" for m in models for v in m["versions"])

            eventually(every_version_ready, timeout_s=60)
        yield process
    finally:
        process.stop()


@pytest.fixture
def ops(gateway: GatewayProcess) -> Iterator[Client]:
    with Client(gateway.url, token=OPERATOR) as client:
        yield client


def counters(gateway: GatewayProcess, model: str) -> dict[tuple[str, str, str], float]:
    """(metric, version, role) → value of the gateway's counters for ``model``."""
    with gateway.client() as client:
        text = client.get("/metrics").text
    found: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("model") == model and sample.name.endswith("_total"):
                key = (sample.name.removesuffix("_total"), labels["version"], labels["role"])
                found[key] = sample.value
    return found


def count(
    gateway: GatewayProcess, model: str, metric: str, version: str, role: str = "served"
) -> float:
    return counters(gateway, model).get((f"rollwise_{metric}", version, role), 0.0)


# -- a canary between two services with different JSON shapes ---------------------------------


def test_a_canary_between_two_shapes_completes_with_every_answer_byte_for_byte(
    gateway: GatewayProcess, services: dict[str, RestService], ops: Client
) -> None:
    bodies = [orjson.dumps(features(i, rows=1 + i % 3)) for i in range(40)]
    # What each service answers itself, to compare the gateway's answers with.
    direct = {
        (version, i): httpx.post(
            url, content=body, headers={"content-type": "application/json"}
        ).content
        for version, url in (
            ("v1", f"{services['torchserve'].url}/predictions/iris"),
            ("v2", f"{services['sagemaker'].url}/invocations"),
        )
        for i, body in enumerate(bodies)
    }
    answered: Counter[str] = Counter()
    wrong: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            n = 0
            while not stop.is_set():
                i = n % len(bodies)
                reply = client.post(
                    "/proxy/canary",
                    content=bodies[i],
                    headers={"content-type": "application/json", "x-user-id": f"u{n % 200}"},
                )
                version = reply.headers.get("x-rollwise-version", "?")
                if reply.status_code != 200 or reply.content != direct.get((version, i)):
                    wrong.append(f"{reply.status_code} {version}: {reply.text[:200]}")
                answered[version] += 1
                n += 1

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        eventually(lambda: sum(answered.values()) > 50, timeout_s=30)
        started = ops.apply(
            {
                "model": "canary",
                "candidate": "v2",
                "strategy": "canary",
                "canary": {"weights": [20, 50], "pause_s": 2},
                "gates": [{"metric": "error_rate", "max_increase": 0.05, "min_samples": 30}],
                "rollback": {"on_inconclusive_after_s": 45},
            }
        )
        assert started["status"]["phase"] == "progressing"
        ended = wait_until_ended(ops, "canary", timeout_s=90)
        # Traffic goes on a moment after the promotion: v2 alone answers then.
        time.sleep(1.5)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert ended["status"]["phase"] == "promoted", ended["status"]["message"]
    assert wrong == []
    assert answered["v1"] > 0 and answered["v2"] > 0
    assert set(answered) == {"v1", "v2"}
    eventually(
        lambda: (
            count(gateway, "canary", "errors", "v2") == 0
            and count(gateway, "canary", "requests", "v2") > 0
        )
    )
    assert count(gateway, "canary", "errors", "v1") == 0


# -- a shadow read through output_path -------------------------------------------------------------


def test_a_shadows_agreement_through_output_path_is_the_known_disagreement_rate(
    gateway: GatewayProcess, ops: Client
) -> None:
    ops.set_routing("shadowed", {"v1": 100}, {"v2": 100})
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        # 100 requests of 2 rows: rows start at 0..199, and the SageMaker-style shadow
        # answers differently on the 20 multiples of 10.
        for i in range(0, 200, 2):
            reply = client.post("/proxy/shadowed", json=features(i, rows=2))
            assert reply.status_code == 200, reply.text
            assert reply.headers["x-rollwise-version"] == "v1"
            assert reply.json()["predictions"][0]["label"] == f"c{i % 3}"

    def all_compared() -> bool:
        return count(gateway, "shadowed", "shadow_compared", "v2", "shadow") == 200

    eventually(all_compared, timeout_s=30)
    assert count(gateway, "shadowed", "shadow_agreed", "v2", "shadow") == 180
    assert count(gateway, "shadowed", "mirror_dropped", "v2", "shadow") == 0
    assert count(gateway, "shadowed", "errors", "v2", "shadow") == 0


def test_feedback_on_a_rest_prediction_is_scored_through_output_path(
    gateway: GatewayProcess, ops: Client
) -> None:
    reply = httpx.post(f"{gateway.url}/proxy/canary", json=features(4))
    assert reply.status_code == 200, reply.text
    request_id = reply.headers["x-request-id"]
    version = reply.headers["x-rollwise-version"]
    result = ops.feedback("canary", request_id, "c1")
    assert result["versions"][f"{version}/served"]["correct"] == 1


def test_without_output_path_feedback_and_prediction_gates_are_refused_saying_why(
    gateway: GatewayProcess, ops: Client
) -> None:
    reply = httpx.post(f"{gateway.url}/proxy/blind", json=features(4))
    assert reply.status_code == 200, reply.text
    with pytest.raises(ClientError) as refused:
        ops.feedback("blind", reply.headers["x-request-id"], "c1")
    assert refused.value.status == 422
    assert "rest version needs output_path" in str(refused.value)

    for gate in (
        {"metric": "accuracy", "min": 0.9},
        {"metric": "shadow_agreement", "min": 0.9},
        {"metric": "drift_psi", "max": 0.2},
    ):
        with pytest.raises(ClientError) as refused:
            ops.apply(
                {
                    "model": "blind",
                    "candidate": "v2",
                    "strategy": "shadow",
                    "shadow": {"mirror": 100},
                    "gates": [gate],
                },
                dry_run=True,
            )
        assert refused.value.status == 422, refused.value
        message = str(refused.value)
        assert f"gates on {gate['metric']}" in message
        assert "without output_path, so rollwise cannot read its predictions" in message
    # Gates on how a version answers need no predictions.
    checked = ops.apply(
        {
            "model": "blind",
            "candidate": "v2",
            "strategy": "canary",
            "canary": {"weights": [10]},
            "gates": [{"metric": "error_rate", "max": 0.01}],
        },
        dry_run=True,
    )
    assert checked["dry_run"] is True


# -- TorchServe-style and /invocations-style paths ------------------------------------------


@pytest.mark.parametrize(
    ("version", "shape", "path"),
    [
        pytest.param("v1", "torchserve", ["predictions", 0, "label"], id="torchserve-predictions"),
        pytest.param("v2", "sagemaker", ["outputs", "classes", 0], id="sagemaker-invocations"),
    ],
)
def test_each_style_of_path_answers_when_forced_with_an_operator_token(
    gateway: GatewayProcess, version: str, shape: str, path: list[Any]
) -> None:
    reply = httpx.post(
        f"{gateway.url}/proxy/shadowed",
        json=features(5),
        headers={"x-rollwise-version": version, "x-rollwise-token": OPERATOR},
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-rollwise-version"] == version
    value: Any = reply.json()
    for step in path:
        value = value[step]
    assert value == "c2"


def test_the_service_root_takes_any_path_below_it(
    gateway: GatewayProcess, services: dict[str, RestService]
) -> None:
    forced = {"x-rollwise-version": "b", "x-rollwise-token": OPERATOR}
    ts = httpx.post(f"{gateway.url}/proxy/app/predictions/iris", json=features(7))
    assert ts.status_code == 200 and ts.json()["predictions"][0]["label"] == "c1"
    sm = httpx.post(f"{gateway.url}/proxy/app/invocations", json=features(7), headers=forced)
    assert sm.status_code == 200 and sm.json()["outputs"]["classes"] == ["c1"]


# -- what passes through --------------------------------------------------------------------


def test_the_request_passes_through_unchanged_and_so_does_the_answer(
    gateway: GatewayProcess,
) -> None:
    body = b"\x00binary \xff body"
    reply = httpx.request(
        "PUT",
        f"{gateway.url}/proxy/app/echo/a%2Fb/c?x=1&y=%20z&x=2",
        content=body,
        headers=[
            ("Authorization", "Bearer the-application's-own"),
            ("Cookie", "session=abc; theme=dark"),
            ("X-Custom", "one"),
            ("X-Custom", "two"),
            ("X-Rollwise-Token", OPERATOR),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "for the gateway only"),
            ("Content-Type", "application/x-thing"),
        ],
    )
    assert reply.status_code == 200, reply.text
    seen = reply.json()
    assert seen["method"] == "PUT"
    assert seen["raw_path"] == "/echo/a%2Fb/c"
    assert seen["query"] == "x=1&y=%20z&x=2"
    assert base64.b64decode(seen["body"]) == body
    fields = [(k, v) for k, v in seen["headers"]]
    names = [k for k, _ in fields]
    assert ("authorization", "Bearer the-application's-own") in fields
    assert ("cookie", "session=abc; theme=dark") in fields
    assert [v for k, v in fields if k == "x-custom"] == ["one", "two"]
    assert ("content-type", "application/x-thing") in fields
    assert not any(k.startswith("x-rollwise-") for k in names)
    assert "x-hop" not in names and "connection" not in names
    assert ("via", "1.1 rollwise") in fields
    assert ("x-forwarded-for", "127.0.0.1") in fields
    assert ("x-request-id", reply.headers["x-request-id"]) in fields
    # The answer's own fields come back, with the gateway's two.
    assert reply.headers["x-service"] == "torchserve"
    assert reply.headers["set-cookie"] == "served=1; Path=/"
    assert reply.headers["x-rollwise-version"] == "a"


def test_a_client_request_id_is_kept_and_passed_on(gateway: GatewayProcess) -> None:
    reply = httpx.get(f"{gateway.url}/proxy/app/echo/", headers={"x-request-id": "req-42"})
    assert reply.headers["x-request-id"] == "req-42"
    assert [v for k, v in reply.json()["headers"] if k == "x-request-id"] == ["req-42"]


def test_a_large_answer_and_a_large_upload_stream_through_intact(gateway: GatewayProcess) -> None:
    size = 5 * MAX_BODY  # past the limit: only what is read whole must fit it
    with httpx.stream("GET", f"{gateway.url}/proxy/app/bytes/{size}") as reply:
        assert reply.status_code == 200
        got = b"".join(reply.iter_bytes())
    expected = b"".join(
        bytes([i % 256]) * min(65536, size - i * 65536) for i in range(size // 65536)
    )
    assert got == expected

    upload = bytes(range(256)) * (MAX_BODY // 256 - 1)

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(upload), 10_000):
            yield upload[start : start + 10_000]

    chunked = httpx.post(f"{gateway.url}/proxy/app/upload", content=pieces())
    assert chunked.status_code == 200, chunked.text
    assert chunked.json() == {"bytes": len(upload), "sha256": hashlib.sha256(upload).hexdigest()}
    framed = httpx.post(f"{gateway.url}/proxy/app/upload", content=upload)
    assert framed.json()["sha256"] == hashlib.sha256(upload).hexdigest()


def test_head_answers_with_the_head_alone(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        head = client.head("/proxy/app/bytes/1000")
        assert head.status_code == 200 and head.content == b""
        # The connection still serves the next request.
        assert client.get("/proxy/app/bytes/10").content == b"\x00" * 10


# -- forced versions need rollwise's own operator token ---------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({}, 401, id="no-token"),
        pytest.param({"authorization": f"Bearer {OPERATOR}"}, 401, id="authorization-is-the-apps"),
        pytest.param({"x-rollwise-token": "not-a-token"}, 401, id="bad-token"),
        pytest.param({"x-rollwise-token": VIEWER}, 403, id="viewer-token"),
    ],
)
def test_a_forced_version_without_operator_rights_is_refused(
    gateway: GatewayProcess, headers: dict[str, str], status: int
) -> None:
    reply = httpx.post(
        f"{gateway.url}/proxy/app/status/200",
        headers={"x-rollwise-version": "b", **headers},
    )
    assert reply.status_code == status, reply.text
    assert "error" in reply.json()
    if status == 401:
        assert "X-Rollwise-Token" in reply.json()["error"]


# -- bad input and misbehaving services ------------------------------------------------------


def test_a_body_over_the_limit_is_refused_whether_declared_or_streamed(
    gateway: GatewayProcess,
) -> None:
    big = b"x" * (MAX_BODY + 1)

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(big), 16_384):
            yield big[start : start + 16_384]

    # Declared too long: refused before a version is chosen, counted nowhere.
    declared = httpx.post(f"{gateway.url}/proxy/stream/upload", content=big)
    assert declared.status_code == 413, declared.text
    assert f"the limit is {MAX_BODY} bytes" in declared.json()["error"]
    # Read whole first (the model's sticky key is a JSON field): refused as it is read.
    whole = httpx.post(f"{gateway.url}/proxy/app/upload", content=pieces())
    assert whole.status_code == 413, whole.text
    before = count(gateway, "stream", "client_errors", "a")
    app_before = count(gateway, "app", "client_errors", "a")
    # Streamed to the version as it came: refused once past the limit, the upstream
    # request abandoned. The caller's mistake: a client error of the version it was on
    # its way to, never an error of it.
    streamed = httpx.post(f"{gateway.url}/proxy/stream/upload", content=pieces())
    assert streamed.status_code == 413, streamed.text
    assert f"exceeds the limit of {MAX_BODY} bytes" in streamed.json()["error"]
    eventually(lambda: count(gateway, "stream", "client_errors", "a") == before + 1)
    assert count(gateway, "stream", "errors", "a") == 0
    assert count(gateway, "app", "client_errors", "a") == app_before
    for model in ("app", "stream"):
        ok = httpx.post(f"{gateway.url}/proxy/{model}/upload", content=b"ok")
        assert ok.json()["bytes"] == 2


def test_an_upstream_that_hangs_times_out_as_the_versions_failure(gateway: GatewayProcess) -> None:
    before = count(gateway, "app", "timeouts", "a")
    started = time.monotonic()
    reply = httpx.post(f"{gateway.url}/proxy/app/hang", timeout=30)
    assert reply.status_code == 504, reply.text
    assert time.monotonic() - started < 10
    assert reply.json()["version"] == "a"
    assert "did not answer in time" in reply.json()["error"]
    eventually(lambda: count(gateway, "app", "timeouts", "a") == before + 1)
    assert httpx.get(f"{gateway.url}/proxy/app/echo/").status_code == 200


def test_an_upstream_that_closes_mid_body_is_a_clean_502(gateway: GatewayProcess) -> None:
    before = count(gateway, "app", "errors", "a")
    reply = httpx.get(f"{gateway.url}/proxy/app/cut")
    assert reply.status_code == 502, reply.text
    assert "closed the connection in the middle of a response" in reply.json()["error"]
    assert reply.headers["x-rollwise-version"] == "a"
    eventually(lambda: count(gateway, "app", "errors", "a") == before + 1)
    assert httpx.get(f"{gateway.url}/proxy/app/echo/").status_code == 200


def test_upstream_statuses_pass_through_and_count_where_they_belong(
    gateway: GatewayProcess,
) -> None:
    client_errors = count(gateway, "app", "client_errors", "a")
    errors = count(gateway, "app", "errors", "a")
    refused = httpx.post(f"{gateway.url}/proxy/app/status/404")
    assert refused.status_code == 404
    assert refused.json() == {"status": 404, "shape": "torchserve"}
    failed = httpx.post(f"{gateway.url}/proxy/app/status/503")
    assert failed.status_code == 503
    assert failed.json() == {"status": 503, "shape": "torchserve"}
    eventually(lambda: count(gateway, "app", "client_errors", "a") == client_errors + 1)
    eventually(lambda: count(gateway, "app", "errors", "a") == errors + 1)


def test_a_sticky_user_from_a_json_field_keeps_their_version(
    gateway: GatewayProcess, ops: Client
) -> None:
    ops.set_routing("app", {"a": 50, "b": 50})
    try:
        seen: dict[str, set[str]] = {}
        with httpx.Client(base_url=gateway.url) as client:
            for round_ in range(3):
                for user in range(20):
                    reply = client.post(
                        "/proxy/app/status/200", json={"user": f"u{user}", "n": round_}
                    )
                    seen.setdefault(f"u{user}", set()).add(reply.headers["x-rollwise-version"])
        assert all(len(versions) == 1 for versions in seen.values())
        assert {v for versions in seen.values() for v in versions} == {"a", "b"}
    finally:
        ops.set_routing("app", {"a": 100})


def test_the_proxy_and_the_inference_routes_each_name_the_other(gateway: GatewayProcess) -> None:
    not_rest = httpx.post(f"{gateway.url}/proxy/plain/predict", json={})
    assert not_rest.status_code == 404
    assert "POST /v2/models/plain/infer" in not_rest.json()["error"]
    unknown = httpx.get(f"{gateway.url}/proxy/nothing/x")
    assert unknown.status_code == 404 and "unknown model 'nothing'" in unknown.json()["error"]
    infer = httpx.post(f"{gateway.url}/models/app/predict", json={"inputs": [[1, 2]]})
    assert infer.status_code == 422
    assert "/proxy/" in infer.json()["error"]
