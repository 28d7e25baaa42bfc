"""Decoding and encoding request and response bodies of the data plane.

Bodies are parsed once with orjson and checked for structure and shape before any
model sees them; every refusal says what was wrong. Open Inference Protocol (V2) JSON
and the plain ``{"inputs": [[...]]}`` form both become an ``InferenceRequest``.
"""

from __future__ import annotations

from math import prod
from typing import Any, TypeGuard

import orjson

from rollwise.backends.base import (
    OIP_DATATYPES,
    InferenceRequest,
    InferenceResponse,
    Tensor,
    flatten,
)
from rollwise.errors import ValidationError
from rollwise.metrics.scoring import describe_label

_NUMBER = (int, float)

_MAX_NAME_SHOWN = 64
"""Tensor names longer than this are cut short in messages: a name is the caller's
text, and a 100 KB one would flood the reply and the logs."""


def _shown(value: Any) -> str:
    """A caller's value as a refusal shows it: short, and never the repr of a container.

    A value nested 1,000 deep would exhaust the stack while its repr is built (issue
    10: a 500 instead of a 422), so containers are only named, as labels are.
    """
    return describe_label(value)


def _name(name: str) -> str:
    """A tensor name for a message, quoted, cut at ``_MAX_NAME_SHOWN`` characters."""
    if len(name) <= _MAX_NAME_SHOWN:
        return repr(name)
    return f"{name[:_MAX_NAME_SHOWN]!r}… ({len(name)} characters)"


class BadRequest(ValidationError):
    """The body is not JSON or not an object at all (HTTP 400, not 422)."""


def load_json(body: bytes) -> dict[str, Any]:
    if not body:
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the request body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the request body must be a JSON object, got {type(data).__name__}")
    return data


def parse_oip_request(body: bytes) -> tuple[InferenceRequest, dict[str, Any]]:
    """Parse an OIP V2 inference request; returns it and the decoded JSON object."""
    data = load_json(body)
    inputs = data.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ValidationError("'inputs' must be a non-empty list of tensors")
    tensors: list[Tensor] = []
    for index, item in enumerate(inputs):
        tensors.append(_parse_tensor(item, index))
    # Every shape is non-empty (checked in _parse_tensor), so dimension 0 is the rows.
    rows = tensors[0].shape[0]
    for tensor in tensors[1:]:
        if tensor.shape[0] != rows:
            raise ValidationError(
                f"input {_name(tensor.name)} has {tensor.shape[0]} rows "
                f"but input {_name(tensors[0].name)} has {rows}"
            )
    request_id = data.get("id")
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ValidationError("'parameters' must be an object")
    names = _output_names(data.get("outputs"))
    return (
        InferenceRequest(
            inputs=tuple(tensors),
            id=request_id if isinstance(request_id, str) else "",
            parameters=parameters,
            outputs=names,
            raw=body,
        ),
        data,
    )


def _output_names(outputs: Any) -> tuple[str, ...]:
    """The names of the requested outputs: ``[{"name": ...}, ...]``, or none at all.

    Anything else is refused: a number here was a TypeError (500), and silently
    skipping items that are not objects would answer outputs the caller did not ask
    for.
    """
    if outputs is None:
        return ()
    if not isinstance(outputs, list):
        raise ValidationError(
            f'\'outputs\' must be a list of objects like {{"name": "label"}}, got {_shown(outputs)}'
        )
    names: list[str] = []
    for index, item in enumerate(outputs):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            raise ValidationError(
                f"outputs[{index}] must be an object with a non-empty string 'name', "
                f"got {_shown(item)}"
            )
        names.append(name)
    return tuple(names)


def _parse_tensor(item: Any, index: int) -> Tensor:
    if not isinstance(item, dict):
        raise ValidationError(f"inputs[{index}] must be an object with name, shape, datatype, data")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise ValidationError(f"inputs[{index}]: 'name' must be a non-empty string")
    # Error messages name the input; the label is only built when one is raised.
    shape = item.get("shape")
    if not _is_shape(shape):
        raise ValidationError(
            f"input {_name(name)}: 'shape' must be a non-empty list of non-negative integers"
        )
    datatype = item.get("datatype")
    if not isinstance(datatype, str) or datatype not in OIP_DATATYPES:
        raise ValidationError(
            f"input {_name(name)}: 'datatype' {_shown(datatype)} is not one of "
            f"{', '.join(OIP_DATATYPES)}"
        )
    data = item.get("data")
    if not isinstance(data, list):
        raise ValidationError(f"input {_name(name)}: 'data' must be a list")
    flat = flatten(data)
    expected = prod(shape)
    if len(flat) != expected:
        raise ValidationError(
            f"input {_name(name)}: shape {shape} needs {expected} values, got {len(flat)}"
        )
    if datatype == "BOOL":
        for value in flat:
            if not isinstance(value, bool):
                raise ValidationError(
                    f"input {_name(name)}: datatype BOOL needs true or false, got {_shown(value)}"
                )
    elif datatype == "BYTES":
        for value in flat:
            if not isinstance(value, str):
                raise ValidationError(
                    f"input {_name(name)}: datatype BYTES needs strings, got {_shown(value)}"
                )
    else:
        for value in flat:
            if not isinstance(value, _NUMBER) or isinstance(value, bool):
                raise ValidationError(
                    f"input {_name(name)}: datatype {datatype} needs numbers, got {_shown(value)}"
                )
    return Tensor(name=name, shape=tuple(shape), datatype=str(datatype), data=flat)


def _is_shape(shape: Any) -> TypeGuard[list[int]]:
    """A non-empty list of non-negative integers (booleans are not integers here)."""
    if not isinstance(shape, list) or not shape:
        return False
    for dim in shape:  # noqa: SIM110 - cheaper than all() over a generator
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            return False
    return True


def parse_plain_request(body: bytes) -> tuple[InferenceRequest, dict[str, Any]]:
    """Parse ``{"inputs": [[f1, f2, ...], ...]}`` (or one row ``[f1, f2]``)."""
    data = load_json(body)
    rows = data.get("inputs")
    if not isinstance(rows, list) or not rows:
        raise ValidationError(
            "'inputs' must be a non-empty list of rows, e.g. [[5.1, 3.5, 1.4, 0.2]]"
        )
    if not isinstance(rows[0], list):
        rows = [rows]
    width = len(rows[0])
    if width == 0:
        raise ValidationError("'inputs' rows must not be empty")
    flat: list[Any] = []
    for index, row in enumerate(rows):
        if not isinstance(row, list):
            raise ValidationError(f"inputs[{index}] must be a list of numbers")
        if len(row) != width:
            raise ValidationError(
                f"inputs[{index}] has {len(row)} values but inputs[0] has {width}; "
                "every row needs the same number of features"
            )
        for value in row:
            if not isinstance(value, _NUMBER) or isinstance(value, bool):
                raise ValidationError(
                    f"inputs[{index}] holds {_shown(value)}; features must be numbers"
                )
        flat.extend(row)
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ValidationError("'parameters' must be an object")
    tensor = Tensor(name="input-0", shape=(len(rows), width), datatype="FP64", data=flat)
    request_id = data.get("id")
    return (
        InferenceRequest(
            inputs=(tensor,),
            id=request_id if isinstance(request_id, str) else "",
            parameters=parameters,
        ),
        data,
    )


def encode_oip_response(
    response: InferenceResponse, model: str, version: str, request_id: str
) -> bytes:
    body: dict[str, Any] = {
        "model_name": model,
        "model_version": version,
        "id": request_id,
        "outputs": [t.to_json() for t in response.outputs],
    }
    if response.parameters:
        body["parameters"] = dict(response.parameters)
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _rows(tensor: Tensor) -> list[Any]:
    data = tensor.data if isinstance(tensor.data, list) else list(tensor.data)
    if len(tensor.shape) <= 1:
        return data
    width = prod(tensor.shape[1:])
    return [data[i * width : (i + 1) * width] for i in range(tensor.shape[0])]


def encode_plain_response(
    response: InferenceResponse, model: str, version: str, request_id: str
) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "version": version,
        "request_id": request_id,
        "outputs": list(response.primary()),
    }
    for tensor in response.outputs[1:]:
        body[tensor.name] = _rows(tensor)
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
