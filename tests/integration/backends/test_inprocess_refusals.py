"""In-process models refusing input they cannot use: the caller's error, not a failure.

A BYTES tensor sent to a numeric in-process model was a
``BackendError`` (502, counted against the version). Input problems the request shows
are ``ValidationError`` — ``RequestRejected`` when the model itself refused — with a
message of bounded length, since it may quote what the caller sent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from onnx import TensorProto, helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType

from rollwise.backends import Backend, InferenceRequest, InferenceResponse, Tensor
from rollwise.backends.onnx import OnnxBackend
from rollwise.backends.sklearn import SklearnBackend
from rollwise.errors import BackendError, RequestRejected, ValidationError
from rollwise.example_models import train_v1

LONG_TEXT = "x" * 100_000


def text_row(value: str = "a") -> InferenceRequest:
    tensor = Tensor("input-0", (1, 4), "BYTES", [value, "b", "c", "d"])
    return InferenceRequest(inputs=(tensor,))


def predict(backend: Backend, request: InferenceRequest) -> InferenceResponse:
    async def go() -> InferenceResponse:
        await backend.load()
        try:
            return await backend.predict(request)
        finally:
            await backend.close()

    return asyncio.run(go())


@pytest.fixture(scope="module")
def sklearn_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sk") / "iris.skops"
    sio.dump(train_v1(), path)
    return path


def onnx_file(folder: Path, shape: list[int | None]) -> Path:
    model = convert_sklearn(
        train_v1(), initial_types=[("input", FloatTensorType(shape))], target_opset=17
    )
    path = folder / "iris.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_text_for_a_numeric_sklearn_model_is_refused_in_the_versions_name(
    sklearn_path: Path,
) -> None:
    backend = SklearnBackend("v1", {"path": str(sklearn_path)}, sklearn_path.parent)
    with pytest.raises(RequestRejected) as caught:
        predict(backend, text_row())
    assert not isinstance(caught.value, BackendError)
    assert caught.value.version == "v1"
    assert str(caught.value) == (
        "version 'v1' (sklearn) cannot use the input: could not convert string to float: 'a'"
    )


@pytest.mark.parametrize("kind", ["sklearn", "onnx"])
def test_a_refusal_quotes_a_long_value_only_in_part(
    kind: str, sklearn_path: Path, tmp_path: Path
) -> None:
    backend: Backend
    if kind == "sklearn":
        backend = SklearnBackend("v1", {"path": str(sklearn_path)}, tmp_path)
    else:
        backend = OnnxBackend("v2", {"path": str(onnx_file(tmp_path, [None, 4]))}, tmp_path)
    with pytest.raises(ValidationError) as caught:
        predict(backend, text_row(LONG_TEXT))
    assert "could not convert string to float: 'xxx" in str(caught.value)
    assert len(str(caught.value)) <= RequestRejected.MAX_MESSAGE_CHARS


def test_a_feed_onnxruntime_calls_an_invalid_argument_is_refused(tmp_path: Path) -> None:
    # A model fixed to one row: the batch size is the request's mistake, and only
    # onnxruntime checks it.
    backend = OnnxBackend("v2", {"path": str(onnx_file(tmp_path, [1, 4]))}, tmp_path)
    rows = np.ones((2, 4)).ravel().tolist()
    request = InferenceRequest(inputs=(Tensor("input", (2, 4), "FP32", rows),))
    with pytest.raises(RequestRejected) as caught:
        predict(backend, request)
    assert caught.value.version == "v2"
    assert "INVALID_ARGUMENT" in str(caught.value)


def test_text_for_one_of_several_numeric_onnx_inputs_is_refused(tmp_path: Path) -> None:
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 2]) for n in "ab"]
    output = helper.make_tensor_value_info("sum", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"])], "add", inputs, [output]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (tmp_path / "add.onnx").write_bytes(model.SerializeToString())
    backend = OnnxBackend("v2", {"path": "add.onnx"}, tmp_path)
    request = InferenceRequest(
        inputs=(
            Tensor("a", (1, 2), "FP32", [1.0, 2.0]),
            Tensor("b", (1, 2), "BYTES", ["one", "two"]),
        )
    )
    with pytest.raises(ValidationError, match=r"input 'b': data cannot be converted to FP32"):
        predict(backend, request)
