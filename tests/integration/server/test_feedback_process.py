"""Ground truth against a real gateway process: who may post it, which labels are
taken, the cap per caller, unguessable request ids and bounded sticky keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
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


def config(iris_dir: Path, **extra: Any) -> dict[str, Any]:
    """The test gateway plus a regression model and one whose classes the config lists."""
    result = gateway_config(iris_dir)
    result["models"]["score"] = {
        "stable": "a",
        "task": "regression",
        "versions": {"a": {"backend": "fake", "outputs": {"predictions": 1.5}}},
    }
    result["models"]["pets"] = {
        "stable": "a",
        "labels": ["cat", "dog"],
        "versions": {"a": {"backend": "fake", "label": "cat"}},
    }
    return {**result, **extra}


def start(directory: Path, settings: dict[str, Any]) -> GatewayProcess:
    process = GatewayProcess(directory, settings).start()

    def iris_answers() -> bool:
        return predict(process, "iris").status_code == 200

    eventually(iris_answers, timeout_s=60)
    return process


@pytest.fixture(scope="module")
def gateway(iris_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = start(tmp_path_factory.mktemp("feedback"), config(iris_dir))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def open_gateway(
    iris_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """Feedback without tokens (a trusted network), at most 3 labels a minute per caller."""
    settings = config(iris_dir, feedback={"auth": "none", "max_per_minute": 3})
    process = start(tmp_path_factory.mktemp("open-feedback"), settings)
    yield process
    process.stop()


def predict(gateway: GatewayProcess, model: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/models/{model}/predict",
        json={"inputs": [SETOSA]},
        headers={"x-user-id": "u1", **headers},
    )


def request_id(gateway: GatewayProcess, model: str = "iris") -> str:
    answer = predict(gateway, model)
    assert answer.status_code == 200, answer.text
    return answer.headers["x-request-id"]


def post_label(
    gateway: GatewayProcess, model: str, body: bytes, token: str | None = FEEDBACK
) -> httpx.Response:
    """POST a raw JSON body (so that it may hold NaN or nest 1,000 deep)."""
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return httpx.post(f"{gateway.url}/models/{model}/feedback", content=body, headers=headers)


def label_body(rid: str, label: bytes) -> bytes:
    return b'{"request_id": ' + orjson.dumps(rid) + b', "label": ' + label + b"}"


def v1_feedback(gateway: GatewayProcess) -> int:
    with gateway.client(OPERATOR) as ops:
        versions = ops.get("/api/v1/models/iris").json()["versions"]
    served = next(v for v in versions if v["name"] == "v1")["served"] or {}
    return int(served.get("feedback", 0))


def test_generated_request_ids_cannot_be_guessed_from_another(gateway: GatewayProcess) -> None:
    first, second = request_id(gateway), request_id(gateway)
    assert len(first) == len(second) == 32
    # Like two independent 128-bit draws (64 ± 5.7 bits apart), not a prefix and a counter.
    assert bin(int(first, 16) ^ int(second, 16)).count("1") >= 30


@pytest.mark.parametrize(
    ("token", "status"),
    [
        pytest.param(None, 401, id="no token"),
        pytest.param(VIEWER, 403, id="a viewer"),
        pytest.param("not-a-token-at-all", 401, id="a wrong token"),
        pytest.param(FEEDBACK, 200, id="a feedback token"),
        pytest.param(OPERATOR, 200, id="an operator"),
    ],
)
def test_who_may_post_ground_truth(gateway: GatewayProcess, token: str | None, status: int) -> None:
    response = post_label(gateway, "iris", label_body(request_id(gateway), b"0"), token)
    assert response.status_code == status, response.text


def test_a_feedback_token_cannot_read_or_change_anything(gateway: GatewayProcess) -> None:
    with gateway.client(FEEDBACK) as labeller:
        assert labeller.get("/api/v1/models").status_code == 403
        assert labeller.get("/api/v1/whoami").status_code == 403
        forced = labeller.post(
            "/models/iris/predict", json={"inputs": [SETOSA]}, headers={"x-rollwise-version": "v2"}
        )
        assert forced.status_code == 403, forced.text


@pytest.mark.parametrize(
    ("label", "message"),
    [
        pytest.param(b'{"a": 1}', "is an object", id="an object"),
        pytest.param(b"null", "is null", id="null"),
        pytest.param(b"true", "is true", id="a boolean"),
        pytest.param(b'"setosa"', "not one of the model's classes (0, 1, 2)", id="a name"),
        pytest.param(b"0.5", "not one of the model's classes", id="a fraction"),
        pytest.param(b"7", "not one of the model's classes", id="an unknown class"),
        pytest.param(orjson.dumps("x" * 100_000), "a string of 100000", id="a 100 KB string"),
        pytest.param(b"[" * 1000 + b"0" + b"]" * 1000, "a list of 1 values", id="1,000 deep"),
        pytest.param(b"[0, 1]", "the prediction had 1 rows", id="a list of the wrong length"),
    ],
)
def test_labels_the_model_cannot_answer_are_refused_and_not_counted(
    gateway: GatewayProcess, label: bytes, message: str
) -> None:
    rid = request_id(gateway)
    before = v1_feedback(gateway)
    refused = post_label(gateway, "iris", label_body(rid, label))
    assert refused.status_code == 422, refused.text
    assert message in refused.json()["error"]
    assert len(refused.content) < 1000  # the label is described, not echoed
    assert v1_feedback(gateway) == before
    # Nothing was stored: the right label for the same request is still taken.
    assert post_label(gateway, "iris", label_body(rid, b"0")).status_code == 200


@pytest.mark.parametrize(
    "label", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b'"1.5"', b"[[1.5]]", b"false"]
)
def test_regression_labels_must_be_finite_numbers(gateway: GatewayProcess, label: bytes) -> None:
    refused = post_label(gateway, "score", label_body(request_id(gateway, "score"), label))
    assert refused.status_code == 422, refused.text
    assert "numbers" in refused.json()["error"]


def test_a_finite_regression_label_is_scored(gateway: GatewayProcess) -> None:
    taken = post_label(gateway, "score", label_body(request_id(gateway, "score"), b"2.5"))
    assert taken.status_code == 200, taken.text
    assert taken.json()["versions"]["a/served"]["abs_error"] == pytest.approx(1.0)


def test_classes_listed_in_the_config_are_the_only_labels_taken(
    gateway: GatewayProcess,
) -> None:
    refused = post_label(gateway, "pets", label_body(request_id(gateway, "pets"), b'"cow"'))
    assert refused.status_code == 422, refused.text
    assert "'cat', 'dog'" in refused.json()["error"]
    taken = post_label(gateway, "pets", label_body(request_id(gateway, "pets"), b'"dog"'))
    assert taken.status_code == 200, taken.text


def test_without_known_classes_any_short_integer_or_string_is_taken(
    gateway: GatewayProcess,
) -> None:
    for label in (b"3", b'"anything"'):
        taken = post_label(gateway, "echo", label_body(request_id(gateway, "echo"), label))
        assert taken.status_code == 200, taken.text
    refused = post_label(gateway, "echo", label_body(request_id(gateway, "echo"), b"{}"))
    assert refused.status_code == 422, refused.text


def test_a_sticky_key_over_256_bytes_is_refused(gateway: GatewayProcess) -> None:
    refused = predict(gateway, "iris", **{"x-user-id": "u" * 257})
    assert refused.status_code == 400, refused.text
    assert "the limit is 256 bytes" in refused.json()["error"]
    assert predict(gateway, "iris", **{"x-user-id": "u" * 256}).status_code == 200


def test_with_auth_none_labels_need_no_token_and_each_caller_is_capped(
    open_gateway: GatewayProcess,
) -> None:
    ids = [request_id(open_gateway) for _ in range(5)]
    statuses = [post_label(open_gateway, "iris", label_body(rid, b"0"), None) for rid in ids[:4]]
    assert [s.status_code for s in statuses[:3]] == [200, 200, 200], statuses[0].text
    over = statuses[3]
    assert over.status_code == 429, over.text
    assert "3 labels per minute" in over.json()["error"]
    assert int(over.headers["retry-after"]) >= 1
    # Another caller (named by its token) has an allowance of its own.
    assert post_label(open_gateway, "iris", label_body(ids[3], b"0")).status_code == 200
