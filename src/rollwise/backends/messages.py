"""What a backend is asked and answers: Open Inference Protocol (V2) tensors, requests,
responses and metadata, as immutable values.

Compiled with the request path (see ``setup.py``): every request makes a few of them.
``raw`` carries a request body as it arrived, so that an HTTP backend can pass it
through untouched. Each value pickles as a call of its constructor (``__reduce__``): a
compiled frozen dataclass cannot be unpickled field by field, and the shadow host sends
requests and answers to its child process as pickles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Open Inference Protocol datatypes and the numpy dtype each maps to.
OIP_DATATYPES: Mapping[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}


def flatten(data: Sequence[Any]) -> list[Any]:
    """OIP tensor data, nested or flat, as one flat row-major list."""
    # Plain loops rather than any()/all() over generators: this runs on every request.
    for item in data:
        if isinstance(item, list):
            break
    else:
        return data if isinstance(data, list) else list(data)
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


@dataclass(frozen=True, slots=True)
class Tensor:
    """One named tensor; ``data`` is flat, row-major, as in the OIP JSON encoding."""

    name: str
    shape: tuple[int, ...]
    datatype: str
    data: Sequence[Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "datatype": self.datatype,
            "data": self.data if isinstance(self.data, list) else list(self.data),
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (Tensor, (self.name, self.shape, self.datatype, self.data))


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    inputs: tuple[Tensor, ...]
    id: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    raw: bytes | None = None
    """The OIP JSON body as received, when it may be forwarded unchanged."""

    @property
    def rows(self) -> int:
        first = self.inputs[0]
        return first.shape[0] if first.shape else 1

    def __reduce__(self) -> tuple[Any, ...]:
        return (InferenceRequest, (self.inputs, self.id, self.parameters, self.outputs, self.raw))


@dataclass(frozen=True, slots=True)
class InferenceResponse:
    outputs: tuple[Tensor, ...]
    model_version: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def primary(self) -> Sequence[Any]:
        """One value per row from the first output: the label, class or number predicted."""
        if not self.outputs:
            return []
        first = self.outputs[0]
        if len(first.shape) <= 1:
            return first.data
        width = 1
        for dim in first.shape[1:]:
            width *= dim
        # A probability matrix per row: the primary value is the arg-max column.
        data = first.data
        rows = first.shape[0]
        if width == 1:
            return data
        out: list[Any] = []
        for r in range(rows):
            row = data[r * width : (r + 1) * width]
            best = max(range(width), key=row.__getitem__)
            out.append(best)
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        return (InferenceResponse, (self.outputs, self.model_version, self.parameters))


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def __reduce__(self) -> tuple[Any, ...]:
        return (TensorSpec, (self.name, self.datatype, self.shape))


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """What a backend can say about the model it serves (OIP model metadata)."""

    platform: str
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ModelMetadata, (self.platform, self.inputs, self.outputs, self.extra))
