"""The gateway's gRPC port as the official Triton client sees it: health, metadata and
inference in front of in-process models, answered as the REST data plane answers,
with the same refusals, the same operator guard on forced versions, and the same
metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from support.gateway import OPERATOR, VIEWER, GatewayProcess, eventually, gateway_config
from support.grpc_calls import (
    SETOSA,
    VIRGINICA,
    answered_version,
    channel,
    grpc_address,
    refusal,
    rows_request,
    triton_client,
    triton_rows,
    with_grpc_port,
)

ROWS = [SETOSA, VIRGINICA]


@pytest.fixture(scope="module")
def config(iris_dir: Path) -> dict[str, Any]:
    return with_grpc_port(gateway_config(iris_dir))


@pytest.fixture(scope="module")
def gateway(
    config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("grpc-port"), config).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def address(config: dict[str, Any], gateway: GatewayProcess) -> str:
    return grpc_address(config)


@pytest.fixture(scope="module")
def client(address: str) -> Iterator[triton.InferenceServerClient]:
    with triton_client(address) as opened:
        yield opened


def rest_answer(gateway: GatewayProcess, rows: list[list[float]], user: str) -> dict[str, Any]:
    body = {
        "inputs": [{"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64", "data": rows}]
    }
    response = httpx.post(
        f"{gateway.url}/v2/models/iris/infer", json=body, headers={"x-user-id": user}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_health_answers_as_rest_does(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", "v2")
    # A version that failed to load is not ready; the model still is.
    assert not client.is_model_ready("iris", "missing")
    with pytest.raises(InferenceServerException) as unknown:
        client.is_model_ready("nope")
    assert unknown.value.status() == "StatusCode.NOT_FOUND"
    assert "unknown model 'nope'" in unknown.value.message()


def test_metadata_describes_the_routed_version_or_the_one_named(
    client: triton.InferenceServerClient, address: str
) -> None:
    assert client.get_server_metadata().name == "rollwise"
    stable = client.get_model_metadata("iris")
    assert stable.name == "iris"
    assert sorted(stable.versions) == ["broken", "missing", "slow", "v1", "v2"]
    assert stable.platform == "sklearn"
    assert [(t.name, t.datatype, list(t.shape)) for t in stable.inputs] == [
        ("input-0", "FP64", [-1, 4])
    ]
    assert [t.name for t in stable.outputs] == ["label", "probabilities"]
    assert client.get_model_metadata("iris", "v2").platform == "onnxruntime"
    with channel(address) as opened:
        _, metadata = opened.metadata("iris")
        assert metadata["x-rollwise-version"] == "v1"
        _, metadata = opened.metadata("iris", version="v2")
        assert metadata["x-rollwise-version"] == "v2"


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_inference_answers_what_rest_answers(
    client: triton.InferenceServerClient, gateway: GatewayProcess, datatype: str
) -> None:
    result = client.infer("iris", [triton_rows(ROWS, datatype)], headers={"x-user-id": "ada"})
    assert answered_version(result) == "v1"
    expected = rest_answer(gateway, ROWS, "ada")
    outputs = {o["name"]: o for o in expected["outputs"]}
    labels = result.as_numpy("label")
    assert labels is not None and labels.tolist() == outputs["label"]["data"]
    probabilities = result.as_numpy("probabilities")
    assert probabilities is not None and probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.ravel(), outputs["probabilities"]["data"], rtol=1e-6)


def test_a_typed_request_is_answered_typed_with_its_ids_in_the_metadata(address: str) -> None:
    with channel(address) as opened:
        reply, metadata = opened.infer(
            rows_request("iris", ROWS, datatype="FP64", id="body-id"),
            metadata=[("x-request-id", "trace-1")],
        )
    assert not reply.raw_output_contents
    labels = next(o for o in reply.outputs if o.name == "label")
    assert list(labels.contents.int64_contents) == [0, 2]
    assert (metadata["x-rollwise-version"], metadata["x-request-id"]) == ("v1", "trace-1")
    assert (reply.model_name, reply.model_version, reply.id) == ("iris", "v1", "trace-1")
    with channel(address) as opened:
        reply, metadata = opened.infer(rows_request("iris", ROWS, id="body-id"))
    assert reply.id == metadata["x-request-id"] == "body-id"


def test_asked_outputs_are_the_only_ones_answered(client: triton.InferenceServerClient) -> None:
    result = client.infer(
        "iris", [triton_rows(ROWS)], outputs=[triton.InferRequestedOutput("label")]
    )
    assert [o.name for o in result.get_response().outputs] == ["label"]


def test_a_request_the_model_refuses_is_an_invalid_argument(address: str) -> None:
    with channel(address) as opened, pytest.raises(grpc.RpcError) as refused:
        opened.infer(
            rows_request("iris", [[1.0, 2.0, 3.0]], datatype="FP64"),
            metadata=[("x-request-id", "bad-1")],
        )
    code, details, trailing = refusal(refused.value)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "expected 4 features per row, got 3" in details
    assert (trailing["x-request-id"], trailing["x-rollwise-version"]) == ("bad-1", "v1")


@pytest.mark.parametrize(
    ("mangle", "code", "says"),
    [
        pytest.param(
            lambda m: m.raw_input_contents.__setitem__(0, b"\x00" * 12),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input 'input-0': 8 FP32 values need 32 bytes of raw contents (4 each), got 12",
            id="raw bytes that do not fill the shape",
        ),
        pytest.param(
            lambda m: m.inputs[0].__setattr__("datatype", "FLOAT32"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input 'input-0': datatype 'FLOAT32' is not one of",
            id="an unknown datatype",
        ),
        pytest.param(
            lambda m: m.__setattr__("model_name", "nope"),
            grpc.StatusCode.NOT_FOUND,
            "unknown model 'nope'",
            id="an unknown model",
        ),
        pytest.param(
            lambda m: m.__setattr__("model_name", ""),
            grpc.StatusCode.INVALID_ARGUMENT,
            "'model_name' is empty",
            id="no model",
        ),
    ],
)
def test_a_bad_tensor_is_refused_saying_what_is_wrong(
    address: str, mangle: Any, code: grpc.StatusCode, says: str
) -> None:
    message = rows_request("iris", ROWS, datatype="FP32", raw=True)
    mangle(message)
    with channel(address) as opened, pytest.raises(grpc.RpcError) as refused:
        opened.infer(message)
    got, details, trailing = refusal(refused.value)
    assert (got, says in details) == (code, True), details
    assert trailing["x-request-id"]


def test_tritonclient_sees_an_invalid_argument_for_a_wrong_feature_count(
    client: triton.InferenceServerClient,
) -> None:
    with pytest.raises(InferenceServerException) as refused:
        client.infer("iris", [triton_rows([[1.0, 2.0]])])
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "expected 4 features per row, got 2" in refused.value.message()


def test_forcing_a_version_needs_an_operator_token(
    client: triton.InferenceServerClient, gateway: GatewayProcess
) -> None:
    rows = [triton_rows(ROWS)]
    with pytest.raises(InferenceServerException) as anonymous:
        client.infer("iris", rows, model_version="v2")
    assert anonymous.value.status() == "StatusCode.UNAUTHENTICATED"
    assert "operator role" in anonymous.value.message()
    viewer = {"authorization": f"Bearer {VIEWER}"}
    with pytest.raises(InferenceServerException) as forbidden:
        client.infer("iris", rows, model_version="v2", headers=viewer)
    assert forbidden.value.status() == "StatusCode.PERMISSION_DENIED"
    with pytest.raises(InferenceServerException) as by_metadata:
        client.infer("iris", rows, headers={"x-rollwise-version": "v2"})
    assert by_metadata.value.status() == "StatusCode.UNAUTHENTICATED"

    operator = {"authorization": f"Bearer {OPERATOR}"}
    assert (
        answered_version(client.infer("iris", rows, model_version="v2", headers=operator)) == "v2"
    )
    forced = {**operator, "x-rollwise-version": "v2"}
    assert answered_version(client.infer("iris", rows, headers=forced)) == "v2"
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("iris", rows, model_version="v9", headers=operator)
    assert unknown.value.status() == "StatusCode.NOT_FOUND"
    assert "has no version 'v9'" in unknown.value.message()
    with pytest.raises(InferenceServerException) as unloaded:
        client.infer("iris", rows, model_version="missing", headers=operator)
    assert unloaded.value.status() == "StatusCode.UNAVAILABLE"

    # Forced calls are previews, counted apart from the served traffic.
    def previews() -> int:
        with gateway.client(OPERATOR) as ops:
            versions = ops.get("/api/v1/models/iris").json()["versions"]
        v2 = next(v for v in versions if v["name"] == "v2")
        return int((v2["preview"] or {}).get("requests", 0))

    eventually(lambda: previews() >= 2)


def test_a_failing_version_is_an_internal_error_naming_it(
    client: triton.InferenceServerClient,
) -> None:
    operator = {"authorization": f"Bearer {OPERATOR}"}
    with pytest.raises(InferenceServerException) as failed:
        client.infer("iris", [triton_rows(ROWS)], model_version="broken", headers=operator)
    assert failed.value.status() == "StatusCode.INTERNAL"
    assert "version 'broken' of model 'iris' failed" in failed.value.message()


def test_grpc_requests_count_in_status_and_metrics_like_rest_ones(
    client: triton.InferenceServerClient, gateway: GatewayProcess
) -> None:
    with gateway.client(OPERATOR) as ops:
        ops.put("/api/v1/models/echo/routing", json={"weights": {"c": 100}, "mirrors": {}})

        def counts() -> dict[str, int]:
            versions = ops.get("/api/v1/models/echo").json()["versions"]
            c = next(v for v in versions if v["name"] == "c")["served"] or {}
            return {k: int(c.get(k, 0)) for k in ("requests", "client_errors")}

        before = counts()
        for _ in range(5):
            assert answered_version(client.infer("echo", [triton_rows([SETOSA])])) == "c"
        for _ in range(3):
            httpx.post(f"{gateway.url}/models/echo/predict", json={"inputs": [SETOSA]})
        eventually(lambda: counts()["requests"] >= before["requests"] + 8)
        metrics = ops.get("/metrics").text
    assert 'rollwise_requests_total{model="echo",role="served",version="c"}' in metrics


def test_a_call_whose_caller_left_still_runs_to_its_end_and_counts(
    address: str, gateway: GatewayProcess
) -> None:
    def slow_previews() -> int:
        with gateway.client(OPERATOR) as ops:
            versions = ops.get("/api/v1/models/iris").json()["versions"]
        slow = next(v for v in versions if v["name"] == "slow")
        return int((slow["preview"] or {}).get("requests", 0))

    before = slow_previews()
    forced = [("authorization", f"Bearer {OPERATOR}"), ("x-rollwise-version", "slow")]
    with channel(address) as opened, pytest.raises(grpc.RpcError) as gone:
        opened.infer(rows_request("iris", ROWS), metadata=forced, timeout_s=0.3)
    assert refusal(gone.value)[0] is grpc.StatusCode.DEADLINE_EXCEEDED
    # The version answered after 3 s, to no one: recorded as a call that succeeded.
    eventually(lambda: slow_previews() == before + 1)
