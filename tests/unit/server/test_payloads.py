"""Decoding OIP and plain prediction bodies: what is accepted and how refusals read."""

from __future__ import annotations

import orjson
import pytest

from rollwise.backends.base import InferenceResponse, Tensor
from rollwise.errors import ValidationError
from rollwise.server.errors import status_of
from rollwise.server.payloads import (
    BadRequest,
    encode_oip_response,
    encode_plain_response,
    parse_oip_request,
    parse_plain_request,
)


def oip(*inputs: dict[str, object], **extra: object) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **extra})


GOOD = {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}


def test_a_flat_oip_request_parses_with_its_raw_body() -> None:
    body = oip(GOOD, id="abc")
    request, _ = parse_oip_request(body)
    assert request.inputs[0].shape == (2, 2)
    assert request.inputs[0].data == [1, 2, 3, 4]
    assert request.id == "abc"
    assert request.raw == body
    assert request.rows == 2


def test_nested_oip_data_is_flattened_row_major() -> None:
    request, _ = parse_oip_request(oip({**GOOD, "data": [[1, 2], [3, 4]]}))
    assert request.inputs[0].data == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        pytest.param(b"{not json", 400, "not valid JSON", id="malformed JSON"),
        pytest.param(b"[1, 2]", 400, "must be a JSON object", id="not an object"),
        pytest.param(b"", 400, "empty", id="empty body"),
        pytest.param(orjson.dumps({"inputs": []}), 422, "non-empty list", id="no inputs"),
        pytest.param(
            oip({**GOOD, "data": [1, 2, 3]}),
            422,
            r"shape \[2, 2\] needs 4 values, got 3",
            id="wrong shape",
        ),
        pytest.param(oip({**GOOD, "shape": [-1, 2]}), 422, "non-negative", id="negative dimension"),
        pytest.param(
            oip({**GOOD, "datatype": "FLOAT"}), 422, "'FLOAT' is not one of", id="unknown datatype"
        ),
        pytest.param(
            oip({**GOOD, "datatype": ["FP32"]}), 422, "is not one of", id="datatype is a list"
        ),
        pytest.param(
            oip({**GOOD, "datatype": "BOOL", "data": [True, False, 1, True]}),
            422,
            "BOOL needs true or false, got 1",
            id="a number among booleans",
        ),
        pytest.param(
            oip({**GOOD, "datatype": "BYTES", "data": ["a", "b", 3, "d"]}),
            422,
            "BYTES needs strings, got 3",
            id="a number among strings",
        ),
        pytest.param(
            oip({**GOOD, "data": [1, 2, "a", 4]}),
            422,
            "needs numbers, got 'a'",
            id="text in numbers",
        ),
        pytest.param(
            oip({"shape": [1], "datatype": "FP32", "data": [1]}), 422, "'name'", id="no name"
        ),
        pytest.param(
            oip(GOOD, {"name": "y", "shape": [3, 1], "datatype": "FP32", "data": [1, 2, 3]}),
            422,
            "has 3 rows but input 'x' has 2",
            id="inputs with different rows",
        ),
    ],
)
def test_bad_oip_bodies_are_refused_with_the_reason(body: bytes, status: int, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        parse_oip_request(body)
    assert status_of(caught.value) == status


def test_plain_rows_become_one_fp64_tensor() -> None:
    request, _ = parse_plain_request(orjson.dumps({"inputs": [[1, 2, 3], [4, 5, 6]]}))
    (tensor,) = request.inputs
    assert (tensor.shape, tensor.datatype, tensor.data) == ((2, 3), "FP64", [1, 2, 3, 4, 5, 6])


def test_a_single_plain_row_is_accepted() -> None:
    request, _ = parse_plain_request(orjson.dumps({"inputs": [5.1, 3.5, 1.4, 0.2]}))
    assert request.inputs[0].shape == (1, 4)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            {"inputs": [[1, 2], [3]]},
            "inputs\\[1\\] has 1 values but inputs\\[0\\] has 2",
            id="ragged rows",
        ),
        pytest.param({"inputs": [[1, "x"]]}, "features must be numbers", id="text feature"),
        pytest.param({"rows": [[1]]}, "'inputs' must be", id="no inputs key"),
        pytest.param({"inputs": [[]]}, "must not be empty", id="empty row"),
    ],
)
def test_bad_plain_bodies_are_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_plain_request(orjson.dumps(data))


def test_malformed_plain_body_is_a_400() -> None:
    with pytest.raises(BadRequest):
        parse_plain_request(b"{")


RESPONSE = InferenceResponse(
    outputs=(
        Tensor("label", (2,), "INT64", [0, 2]),
        Tensor("probabilities", (2, 3), "FP32", [0.9, 0.05, 0.05, 0.1, 0.1, 0.8]),
    )
)


def test_oip_responses_name_the_model_version_and_id() -> None:
    body = orjson.loads(encode_oip_response(RESPONSE, "iris", "v2", "rid"))
    assert (body["model_name"], body["model_version"], body["id"]) == ("iris", "v2", "rid")
    assert body["outputs"][0] == {
        "name": "label",
        "shape": [2],
        "datatype": "INT64",
        "data": [0, 2],
    }


def test_plain_responses_give_one_output_per_row() -> None:
    body = orjson.loads(encode_plain_response(RESPONSE, "iris", "v2", "rid"))
    assert body["outputs"] == [0, 2]
    assert body["probabilities"] == [[0.9, 0.05, 0.05], [0.1, 0.1, 0.8]]


def test_primary_output_of_a_probability_matrix_is_the_argmax() -> None:
    only_probabilities = InferenceResponse(outputs=(RESPONSE.outputs[1],))
    assert list(only_probabilities.primary()) == [0, 2]
