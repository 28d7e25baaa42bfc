"""One tensor of an Open Inference Protocol gRPC message, to and from rollwise's
``Tensor``: its values in the ``contents`` field of its datatype, or as raw bytes.

Pure functions, no I/O; what is wrong is a ``ValueError`` that says it without naming
the tensor (``convert`` adds whose it is, and whose fault).

Values read: typed contents become lists, raw contents numpy arrays (flat, native byte
order: a large tensor is not turned into Python objects). BYTES elements that are
valid UTF-8 become ``str``, as they are in OIP JSON; others stay ``bytes``, so that
binary data reaches a gRPC upstream untouched. Raw layout: little-endian, flat and
row-major; BOOL one byte an element; each BYTES element after its 4-byte little-endian
length.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import prod
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from rollwise.backends.messages import OIP_DATATYPES, Tensor
from rollwise.grpc_v2 import grpc_predict_v2_pb2 as pb

CONTENTS_FIELD: Mapping[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The ``InferTensorContents`` field of each datatype; FP16 has none (raw only)."""

_FIELDS = tuple(dict.fromkeys(CONTENTS_FIELD.values()))

RAW_DTYPE: Mapping[str, str] = {
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
"""How each fixed-size datatype is laid out in raw contents (little-endian); BOOL is
one byte per element and BYTES length-prefixed, both read apart."""

_NARROW_INTS: Mapping[str, tuple[int, int]] = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
}
"""Datatypes carried in a wider contents field: their values are range-checked."""

_LENGTH_BYTES = 4
"""Each raw BYTES element comes after its length, a 4-byte little-endian integer."""

_MAX_NAME_SHOWN = 64
_MAX_REASON_CHARS = 200


def decode(
    name: str,
    datatype: str,
    shape: tuple[int, ...],
    contents: pb.InferTensorContents | None,
    raw: bytes | None,
    *,
    scalar_ok: bool,
) -> Tensor:
    """One tensor from its parts; ``ValueError`` says what is wrong (without its name)."""
    if datatype not in OIP_DATATYPES:
        raise ValueError(f"datatype {shown(datatype)} is not one of {', '.join(OIP_DATATYPES)}")
    if not shape and not scalar_ok:
        raise ValueError("'shape' must have at least one dimension (the rows)")
    for dim in shape:
        if dim < 0:
            raise ValueError(f"shape {list(shape)} has a negative size")
    count = prod(shape)
    data = (
        _from_raw(datatype, count, raw)
        if raw is not None
        else _from_contents(datatype, shape, count, contents)
    )
    return Tensor(name=name, shape=shape, datatype=datatype, data=data)


def _from_contents(
    datatype: str, shape: tuple[int, ...], count: int, contents: pb.InferTensorContents | None
) -> list[Any]:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise ValueError(f"datatype {datatype} has no contents field: send it as raw contents")
    if contents is None:
        if count:
            raise ValueError(f"shape {list(shape)} needs {count} values, got none")
        return []
    for other in _FIELDS:
        if other != field and len(getattr(contents, other)):
            raise ValueError(
                f"datatype {datatype} takes its values in contents.{field}, "
                f"but contents.{other} holds values"
            )
    values = getattr(contents, field)
    if len(values) != count:
        raise ValueError(
            f"shape {list(shape)} needs {count} values, got {len(values)} in contents.{field}"
        )
    if datatype == "BYTES":
        return [_text_or_bytes(value) for value in values]
    data = list(values)
    bounds = _NARROW_INTS.get(datatype)
    if bounds is not None and data:
        low, high = bounds
        smallest, largest = min(data), max(data)
        if smallest < low or largest > high:
            bad = smallest if smallest < low else largest
            raise ValueError(f"value {bad} is out of the range of {datatype} ({low} to {high})")
    return data


def _from_raw(datatype: str, count: int, raw: bytes) -> Sequence[Any]:
    if datatype == "BYTES":
        return _split_bytes(raw, count)
    if datatype == "BOOL":
        if len(raw) != count:
            raise ValueError(
                f"{count} BOOL values need {count} bytes of raw contents, got {len(raw)}"
            )
        return _as_data(np.frombuffer(raw, dtype=np.uint8) != 0)
    dtype = np.dtype(RAW_DTYPE[datatype])
    needed = count * dtype.itemsize
    if len(raw) != needed:
        raise ValueError(
            f"{count} {datatype} values need {needed} bytes of raw contents "
            f"({dtype.itemsize} each), got {len(raw)}"
        )
    # A copy in native byte order: writable, as the arrays REST requests make are.
    return _as_data(np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("=")))


def _as_data(array: npt.NDArray[Any]) -> Sequence[Any]:
    # A flat array is what a tensor's data needs (len, indexing, iteration) and what
    # every backend takes, though numpy does not register it as a Sequence.
    return cast(Sequence[Any], array)


def _split_bytes(raw: bytes, count: int) -> list[Any]:
    """The elements of raw BYTES contents: each a 4-byte little-endian length, then
    that many bytes."""
    items: list[Any] = []
    offset, size = 0, len(raw)
    while offset < size:
        if len(items) == count:
            raise ValueError(f"raw BYTES contents hold more than the {count} elements of the shape")
        if offset + _LENGTH_BYTES > size:
            raise ValueError(f"raw BYTES element {len(items)} is cut off inside its 4-byte length")
        length = int.from_bytes(raw[offset : offset + _LENGTH_BYTES], "little")
        offset += _LENGTH_BYTES
        if offset + length > size:
            raise ValueError(
                f"raw BYTES element {len(items)} says {length} bytes, but {size - offset} are left"
            )
        items.append(_text_or_bytes(raw[offset : offset + length]))
        offset += length
    if len(items) != count:
        raise ValueError(f"the shape needs {count} BYTES elements, raw contents hold {len(items)}")
    return items


def encode_raw(tensor: Tensor) -> bytes:
    """The tensor's values as raw contents; ``ValueError`` when they do not fit."""
    if tensor.datatype == "BYTES":
        _check_count(tensor, len(tensor.data))
        parts: list[bytes] = []
        for item in tensor.data:
            element = _as_bytes(item)
            parts.append(len(element).to_bytes(_LENGTH_BYTES, "little"))
            parts.append(element)
        return b"".join(parts)
    array = _array(tensor)
    _check_count(tensor, len(array))
    if tensor.datatype == "BOOL":
        return bytes(array.astype(np.uint8).tobytes())
    return bytes(array.astype(RAW_DTYPE[tensor.datatype], copy=False).tobytes())


def fill_contents(contents: pb.InferTensorContents, tensor: Tensor) -> None:
    target = getattr(contents, CONTENTS_FIELD[tensor.datatype])
    if tensor.datatype == "BYTES":
        _check_count(tensor, len(tensor.data))
        target.extend([_as_bytes(item) for item in tensor.data])
    else:
        array = _array(tensor)
        _check_count(tensor, len(array))
        target.extend(array.tolist())


def _array(tensor: Tensor) -> npt.NDArray[Any]:
    """The tensor's values as a flat array of its datatype."""
    if tensor.datatype not in OIP_DATATYPES:
        raise ValueError(
            f"datatype {shown(tensor.datatype)} is not one of {', '.join(OIP_DATATYPES)}"
        )
    try:
        # Overflow raises rather than wrapping around or turning into infinity.
        with np.errstate(over="raise", invalid="raise"):
            return np.asarray(tensor.data, dtype=OIP_DATATYPES[tensor.datatype]).reshape(-1)
    except (ValueError, TypeError, OverflowError, FloatingPointError) as error:
        reason = str(error)
        if len(reason) > _MAX_REASON_CHARS:
            reason = reason[: _MAX_REASON_CHARS - 1] + "…"
        raise ValueError(f"data does not fit datatype {tensor.datatype}: {reason}") from None


def _check_count(tensor: Tensor, found: int) -> None:
    expected = prod(tensor.shape)
    if found != expected:
        raise ValueError(f"shape {list(tensor.shape)} needs {expected} values, got {found}")


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8", "surrogatepass")
    if isinstance(item, bytearray | memoryview | np.bytes_):
        return bytes(item)
    return str(item).encode("utf-8")


def _text_or_bytes(value: bytes) -> str | bytes:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


def shown(name: str) -> str:
    """A caller's name for a message, quoted, cut at ``_MAX_NAME_SHOWN`` characters."""
    if len(name) <= _MAX_NAME_SHOWN:
        return repr(name)
    return f"{name[:_MAX_NAME_SHOWN]!r}… ({len(name)} characters)"
