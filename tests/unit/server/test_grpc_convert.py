"""The Open Inference Protocol over gRPC: requests read as strictly as REST JSON, answers
written the way the request came, and what an upstream answers read in either form."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollwise.backends.base import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    Tensor,
    TensorSpec,
)
from rollwise.errors import ValidationError
from rollwise.grpc_v2 import convert, parameters
from rollwise.grpc_v2 import grpc_predict_v2_pb2 as pb

Input = pb.ModelInferRequest.InferInputTensor


def infer(*inputs: Input, raw: list[bytes] | None = None, **fields: Any) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="iris", inputs=list(inputs), **fields)
    message.raw_input_contents.extend(raw or [])
    return message


def typed(name: str, datatype: str, shape: list[int], **contents: Any) -> Input:
    return Input(
        name=name, datatype=datatype, shape=shape, contents=pb.InferTensorContents(**contents)
    )


def bare(name: str, datatype: str, shape: list[int]) -> Input:
    return Input(name=name, datatype=datatype, shape=shape)


def values(request: InferenceRequest, index: int = 0) -> list[Any]:
    data = request.inputs[index].data
    return data.tolist() if isinstance(data, np.ndarray) else list(data)


# -- requests in ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tensor", "expected"),
    [
        pytest.param(
            typed("x", "FP32", [1, 2], fp32_contents=[1.5, 2.5]), [1.5, 2.5], id="fp32-contents"
        ),
        pytest.param(
            typed("x", "FP64", [2, 1], fp64_contents=[0.1, 0.2]), [0.1, 0.2], id="fp64-contents"
        ),
        pytest.param(
            typed("x", "INT64", [1, 2], int64_contents=[-(2**40), 7]),
            [-(2**40), 7],
            id="int64-contents",
        ),
        pytest.param(
            typed("x", "INT32", [3], int_contents=[1, -2, 3]), [1, -2, 3], id="int32-contents"
        ),
        pytest.param(
            typed("x", "UINT8", [2], uint_contents=[0, 255]), [0, 255], id="uint8-contents"
        ),
        pytest.param(
            typed("x", "BOOL", [1, 2], bool_contents=[True, False]),
            [True, False],
            id="bool-contents",
        ),
        pytest.param(
            typed("x", "BYTES", [2], bytes_contents=[b"hello", b"\xff\x00"]),
            ["hello", b"\xff\x00"],
            id="bytes-contents-text-as-str-binary-as-bytes",
        ),
        pytest.param(bare("x", "FP32", [0, 4]), [], id="no-rows-no-values"),
    ],
)
def test_typed_contents_become_flat_values(tensor: Input, expected: list[Any]) -> None:
    request = convert.request_from_proto(infer(tensor))
    assert values(request) == expected
    assert request.inputs[0].shape == tuple(tensor.shape)
    assert request.inputs[0].datatype == tensor.datatype


@pytest.mark.parametrize(
    ("datatype", "raw", "expected"),
    [
        pytest.param("FP32", struct.pack("<2f", 1.5, -2.0), [1.5, -2.0], id="fp32"),
        pytest.param("FP64", struct.pack("<2d", 0.1, 1e300), [0.1, 1e300], id="fp64"),
        pytest.param("INT32", struct.pack("<2i", -5, 2**31 - 1), [-5, 2**31 - 1], id="int32"),
        pytest.param("INT64", struct.pack("<2q", -(2**62), 9), [-(2**62), 9], id="int64"),
        pytest.param("UINT16", struct.pack("<2H", 0, 65535), [0, 65535], id="uint16"),
        pytest.param("FP16", np.array([0.5, 2.0], "<f2").tobytes(), [0.5, 2.0], id="fp16"),
        pytest.param("BOOL", b"\x01\x00", [True, False], id="bool"),
        pytest.param(
            "BYTES",
            struct.pack("<I", 2) + b"hi" + struct.pack("<I", 1) + b"\xfe",
            ["hi", b"\xfe"],
            id="bytes-length-prefixed",
        ),
    ],
)
def test_raw_contents_are_read_little_endian(
    datatype: str, raw: bytes, expected: list[Any]
) -> None:
    request = convert.request_from_proto(infer(bare("x", datatype, [2]), raw=[raw]))
    assert values(request) == expected


def test_a_request_keeps_its_id_parameters_and_outputs() -> None:
    message = infer(typed("x", "FP32", [1, 1], fp32_contents=[1.0]), id="r-1")
    message.parameters["user_id"].string_param = "u7"
    message.parameters["top_k"].int64_param = 3
    message.parameters["explain"].bool_param = True
    message.parameters["temperature"].double_param = 0.5
    message.outputs.add(name="label")
    request = convert.request_from_proto(message)
    assert request.id == "r-1"
    assert dict(request.parameters) == {
        "user_id": "u7",
        "top_k": 3,
        "explain": True,
        "temperature": 0.5,
    }
    assert request.outputs == ("label",)
    assert request.raw is None


@pytest.mark.parametrize(
    ("message", "says"),
    [
        pytest.param(infer(), "has no inputs", id="no inputs"),
        pytest.param(
            infer(typed("", "FP32", [1], fp32_contents=[1.0])),
            "inputs[0]: 'name' must be a non-empty string",
            id="no name",
        ),
        pytest.param(
            infer(typed("x", "FLOAT", [1], fp32_contents=[1.0])),
            "input 'x': datatype 'FLOAT' is not one of BOOL",
            id="unknown datatype",
        ),
        pytest.param(
            infer(typed("x", "FP32", [], fp32_contents=[1.0])),
            "input 'x': 'shape' must have at least one dimension",
            id="scalar shape",
        ),
        pytest.param(
            infer(typed("x", "FP32", [2, -1], fp32_contents=[1.0])),
            "input 'x': shape [2, -1] has a negative size",
            id="negative dimension",
        ),
        pytest.param(
            infer(typed("x", "FP32", [1, 4], fp32_contents=[1.0, 2.0, 3.0])),
            "input 'x': shape [1, 4] needs 4 values, got 3 in contents.fp32_contents",
            id="too few values",
        ),
        pytest.param(
            infer(typed("x", "FP32", [1, 2], fp64_contents=[1.0, 2.0])),
            "input 'x': datatype FP32 takes its values in contents.fp32_contents, "
            "but contents.fp64_contents holds values",
            id="values in another datatype's field",
        ),
        pytest.param(
            infer(bare("x", "FP32", [1, 2])),
            "input 'x': shape [1, 2] needs 2 values, got none",
            id="no contents at all",
        ),
        pytest.param(
            infer(typed("x", "INT8", [1], int_contents=[300])),
            "input 'x': value 300 is out of the range of INT8 (-128 to 127)",
            id="int8 out of range",
        ),
        pytest.param(
            infer(typed("x", "FP16", [1], fp32_contents=[1.0])),
            "input 'x': datatype FP16 has no contents field: send it as raw contents",
            id="fp16 without raw",
        ),
        pytest.param(
            infer(bare("x", "FP32", [1, 4]), raw=[b"\x00" * 12]),
            "input 'x': 4 FP32 values need 16 bytes of raw contents (4 each), got 12",
            id="raw too short",
        ),
        pytest.param(
            infer(bare("x", "FP32", [1]), bare("y", "FP32", [1]), raw=[b"\x00" * 4]),
            "raw_input_contents holds 1 entries for 2 inputs",
            id="raw for some inputs only",
        ),
        pytest.param(
            infer(typed("x", "FP32", [1], fp32_contents=[1.0]), raw=[b"\x00" * 4]),
            "input 'x' has contents while the request carries raw_input_contents",
            id="raw and contents mixed",
        ),
        pytest.param(
            infer(bare("x", "BYTES", [1]), raw=[struct.pack("<I", 9) + b"abc"]),
            "input 'x': raw BYTES element 0 says 9 bytes, but 3 are left",
            id="bytes element cut off",
        ),
        pytest.param(
            infer(bare("x", "BYTES", [1]), raw=[struct.pack("<I", 1) + b"a" + b"\x00\x00"]),
            "input 'x': raw BYTES contents hold more than the 1 elements of the shape",
            id="bytes beyond the shape",
        ),
        pytest.param(
            infer(
                typed("x", "FP32", [2, 1], fp32_contents=[1.0, 2.0]),
                typed("y", "FP32", [3, 1], fp32_contents=[1.0, 2.0, 3.0]),
            ),
            "input 'y' has 3 rows but input 'x' has 2",
            id="rows differ",
        ),
        pytest.param(
            infer(typed("x" * 500, "FP32", [1], fp32_contents=[])),
            "… (500 characters): shape [1] needs 1 values",
            id="a long name is cut short",
        ),
    ],
)
def test_a_bad_request_is_refused_saying_what_is_wrong(
    message: pb.ModelInferRequest, says: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        convert.request_from_proto(message)
    assert says in str(refused.value)


def test_a_parameter_without_a_value_is_refused() -> None:
    message = infer(typed("x", "FP32", [1], fp32_contents=[1.0]))
    message.parameters["empty"].Clear()
    with pytest.raises(ValidationError, match="parameter 'empty' has no value"):
        convert.request_from_proto(message)


# -- answers out -----------------------------------------------------------------------------

ANSWER = InferenceResponse(
    outputs=(
        Tensor("label", (2,), "INT64", [0, 2]),
        Tensor("probabilities", (2, 2), "FP64", np.array([0.75, 0.25, 0.125, 0.875])),
        Tensor("name", (2,), "BYTES", ["setosa", "virginica"]),
        Tensor("score", (2,), "FP32", [0.5, 1.5]),
        Tensor("flag", (2,), "BOOL", [True, False]),
    ),
    parameters={"note": "ok", "took_ms": 3},
)


@pytest.mark.parametrize("raw", [pytest.param(False, id="typed"), pytest.param(True, id="raw")])
def test_an_answer_goes_back_the_way_the_request_came(raw: bool) -> None:
    message = convert.response_to_proto(
        ANSWER, model="iris", version="v2", request_id="r-9", raw=raw
    )
    assert (message.model_name, message.model_version, message.id) == ("iris", "v2", "r-9")
    assert bool(message.raw_output_contents) is raw
    assert all(item.HasField("contents") is not raw for item in message.outputs)
    back = convert.response_from_proto(message)
    assert [t.name for t in back.outputs] == [t.name for t in ANSWER.outputs]
    for got, sent in zip(back.outputs, ANSWER.outputs, strict=True):
        assert (got.shape, got.datatype) == (sent.shape, sent.datatype)
        data = got.data.tolist() if isinstance(got.data, np.ndarray) else list(got.data)
        expected = sent.data.tolist() if isinstance(sent.data, np.ndarray) else list(sent.data)
        assert data == expected
    assert dict(back.parameters) == {"note": "ok", "took_ms": 3}


def test_an_fp16_output_sends_the_whole_answer_raw() -> None:
    answer = InferenceResponse(
        outputs=(Tensor("a", (1,), "FP32", [1.0]), Tensor("b", (1,), "FP16", [0.5]))
    )
    message = convert.response_to_proto(answer, model="m", version="v", request_id="", raw=False)
    assert len(message.raw_output_contents) == 2


def test_parameters_grpc_cannot_hold_go_as_json_text() -> None:
    message = pb.ModelInferResponse()
    parameters.parameters_to_proto(
        {"nested": {"a": [1, 2]}, "huge": 2**70, "big": 2**63, "np": np.float32(0.5)},
        message.parameters,
    )
    assert parameters.parameters_from_proto(message.parameters) == {
        "nested": '{"a":[1,2]}',
        "huge": str(2**70),
        "big": 2**63,
        "np": 0.5,
    }


@pytest.mark.parametrize(
    ("tensor", "says"),
    [
        pytest.param(
            Tensor("p", (2, 2), "FP64", [0.1, 0.2, 0.3]),
            "output 'p': shape [2, 2] needs 4 values, got 3",
            id="count differs from shape",
        ),
        pytest.param(
            Tensor("p", (1,), "FP32", ["high"]),
            "output 'p': data does not fit datatype FP32",
            id="text for numbers",
        ),
        pytest.param(
            Tensor("p", (1,), "FP32", [1e300]),
            "output 'p': data does not fit datatype FP32",
            id="overflows float32",
        ),
    ],
)
def test_an_answer_grpc_cannot_carry_is_a_value_error(tensor: Tensor, says: str) -> None:
    with pytest.raises(ValueError) as failed:
        convert.response_to_proto(
            InferenceResponse(outputs=(tensor,)), model="m", version="v", request_id="", raw=True
        )
    assert says in str(failed.value)


# -- requests out, answers in (a gRPC upstream) ----------------------------------------------


def test_a_request_for_an_upstream_is_sent_raw() -> None:
    request = InferenceRequest(
        inputs=(
            Tensor("x", (1, 2), "FP32", [1.0, 2.0]),
            Tensor("t", (1,), "BYTES", ["é"]),
        ),
        id="abc",
        parameters={"user_id": "u1"},
        outputs=("label",),
    )
    message = convert.request_to_proto(request, model="iris-upstream", version="3")
    assert (message.model_name, message.model_version, message.id) == ("iris-upstream", "3", "abc")
    assert list(message.raw_input_contents) == [
        struct.pack("<2f", 1.0, 2.0),
        struct.pack("<I", 2) + "é".encode(),
    ]
    assert [o.name for o in message.outputs] == ["label"]
    assert message.parameters["user_id"].string_param == "u1"
    assert values(convert.request_from_proto(message)) == [1.0, 2.0]


def test_data_that_does_not_fit_an_upstream_request_is_the_callers_error() -> None:
    request = InferenceRequest(inputs=(Tensor("x", (1,), "INT8", [1000]),))
    with pytest.raises(ValidationError, match="input 'x': data does not fit datatype INT8"):
        convert.request_to_proto(request, model="m")


@pytest.mark.parametrize(
    ("message", "says"),
    [
        pytest.param(
            pb.ModelInferResponse(outputs=[{"name": "a", "datatype": "FP32", "shape": [1]}]),
            "output 'a': shape [1] needs 1 values, got none",
            id="no values",
        ),
        pytest.param(
            pb.ModelInferResponse(
                outputs=[{"name": "a", "datatype": "FP32", "shape": [1]}],
                raw_output_contents=[b"", b""],
            ),
            "raw_output_contents holds 2 entries for 1 outputs",
            id="raw count differs",
        ),
        pytest.param(
            pb.ModelInferResponse(outputs=[{"datatype": "FP32", "shape": [0]}]),
            "outputs[0] has no name",
            id="no name",
        ),
    ],
)
def test_a_malformed_upstream_answer_is_a_value_error(
    message: pb.ModelInferResponse, says: str
) -> None:
    with pytest.raises(ValueError) as failed:
        convert.response_from_proto(message)
    assert says in str(failed.value)


def test_an_upstream_may_answer_a_scalar() -> None:
    message = pb.ModelInferResponse(
        outputs=[
            {"name": "n", "datatype": "INT64", "shape": [], "contents": {"int64_contents": [4]}}
        ]
    )
    assert convert.response_from_proto(message).outputs[0].data == [4]


def test_metadata_goes_both_ways() -> None:
    metadata = ModelMetadata(
        platform="sklearn",
        inputs=(TensorSpec("input-0", "FP64", (-1, 4)),),
        outputs=(TensorSpec("label", "INT64", (-1,)),),
    )
    message = convert.metadata_to_proto("iris", ["v1", "v2"], metadata)
    assert (message.name, list(message.versions), message.platform) == (
        "iris",
        ["v1", "v2"],
        "sklearn",
    )
    back = convert.metadata_from_proto(message, upstream="grpc://h:1", model="iris")
    assert (back.platform, back.inputs, back.outputs) == (
        "sklearn",
        metadata.inputs,
        metadata.outputs,
    )
    assert back.extra == {
        "upstream": "grpc://h:1",
        "model": "iris",
        "name": "iris",
        "versions": ["v1", "v2"],
    }
    assert convert.metadata_to_proto("iris", ["v1"], None).platform == ""


# -- the round trip --------------------------------------------------------------------------

FINITE64 = st.floats(allow_nan=False, allow_infinity=False)
FINITE32 = st.floats(allow_nan=False, allow_infinity=False, width=32)
ELEMENTS: dict[str, st.SearchStrategy[Any]] = {
    "FP32": FINITE32,
    "FP64": FINITE64,
    "INT64": st.integers(-(2**63), 2**63 - 1),
    "INT32": st.integers(-(2**31), 2**31 - 1),
    "INT8": st.integers(-128, 127),
    "UINT64": st.integers(0, 2**64 - 1),
    "UINT8": st.integers(0, 255),
    "BOOL": st.booleans(),
    "BYTES": st.one_of(st.text(), st.binary().filter(lambda b: not _utf8(b))),
}


def _utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@st.composite
def tensors(draw: st.DrawFn, name: str, rows: int) -> Tensor:
    datatype = draw(st.sampled_from(sorted(ELEMENTS)))
    width = draw(st.integers(1, 3))
    data = draw(st.lists(ELEMENTS[datatype], min_size=rows * width, max_size=rows * width))
    return Tensor(name, (rows, width), datatype, data)


@st.composite
def tensor_pairs(draw: st.DrawFn) -> tuple[Tensor, Tensor]:
    rows = draw(st.integers(0, 3))
    return draw(tensors("a", rows)), draw(tensors("b", rows))


def _flat(tensor: Tensor) -> list[Any]:
    return tensor.data.tolist() if isinstance(tensor.data, np.ndarray) else list(tensor.data)


def _alike(got: tuple[Tensor, ...], sent: tuple[Tensor, ...]) -> None:
    assert [(t.name, t.datatype, t.shape) for t in got] == [
        (t.name, t.datatype, t.shape) for t in sent
    ]
    for received, expected in zip(got, sent, strict=True):
        assert _flat(received) == list(expected.data)


@given(pair=tensor_pairs(), raw=st.booleans(), request_id=st.text(max_size=20))
def test_an_answer_reads_back_as_it_was_written(
    pair: tuple[Tensor, Tensor], raw: bool, request_id: str
) -> None:
    # Written typed or raw, serialized, and read back as a client (or rollwise's own
    # upstream backend) reads it: the same names, datatypes, shapes and values.
    message = convert.response_to_proto(
        InferenceResponse(outputs=pair), model="m", version="v", request_id=request_id, raw=raw
    )
    wire = pb.ModelInferResponse.FromString(message.SerializeToString())
    back = convert.response_from_proto(wire)
    assert (wire.id, back.model_version) == (request_id, "v")
    _alike(back.outputs, pair)


@given(pair=tensor_pairs())
def test_a_request_sent_upstream_reads_back_as_it_was_sent(pair: tuple[Tensor, Tensor]) -> None:
    message = convert.request_to_proto(InferenceRequest(inputs=pair, id="r"), model="m")
    wire = pb.ModelInferRequest.FromString(message.SerializeToString())
    back = convert.request_from_proto(wire)
    assert back.id == "r"
    _alike(back.inputs, pair)
