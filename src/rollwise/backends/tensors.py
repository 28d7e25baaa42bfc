"""Conversion between Open Inference Protocol tensors and numpy arrays.

Pure functions shared by the in-process backends: request tensors become one 2-D
feature matrix (rows x features) checked against what the model expects, and model
results become named OIP output tensors. Every refusal is a ``ValidationError`` whose
message says what was expected and what arrived; what numpy said about the data is
quoted only up to ``REASON_CHARS``, as it may repeat a whole value the caller sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from math import prod
from typing import Any

import numpy as np
import numpy.typing as npt

from rollwise.backends.base import OIP_DATATYPES, Tensor, TensorSpec
from rollwise.errors import ValidationError

REASON_CHARS = 200

LABEL = "label"
PROBABILITIES = "probabilities"
PREDICTIONS = "predictions"

_DATATYPE_OF_KIND_AND_SIZE: Mapping[tuple[str, int], str] = {
    ("b", 1): "BOOL",
    ("u", 1): "UINT8",
    ("u", 2): "UINT16",
    ("u", 4): "UINT32",
    ("u", 8): "UINT64",
    ("i", 1): "INT8",
    ("i", 2): "INT16",
    ("i", 4): "INT32",
    ("i", 8): "INT64",
    ("f", 2): "FP16",
    ("f", 4): "FP32",
    ("f", 8): "FP64",
}


def bounded_reason(error: BaseException) -> str:
    """``str(error)`` cut to ``REASON_CHARS`` characters."""
    text = str(error)
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The OIP datatype for a numpy dtype; text and objects are ``BYTES``."""
    found = _DATATYPE_OF_KIND_AND_SIZE.get((dtype.kind, dtype.itemsize))
    if found is not None:
        return found
    if dtype.kind in "USO":
        return "BYTES"
    raise ValueError(f"numpy dtype {dtype} has no Open Inference Protocol datatype")


def tensor_to_array(tensor: Tensor) -> npt.NDArray[Any]:
    """The tensor's data as a numpy array of its declared datatype and shape."""
    datatype = tensor.datatype.upper()
    dtype = OIP_DATATYPES.get(datatype)
    if dtype is None:
        raise ValidationError(
            f"input {tensor.name!r}: datatype {tensor.datatype!r} is not one of "
            f"{', '.join(OIP_DATATYPES)}"
        )
    shape = tuple(tensor.shape)
    if any(dim < 0 for dim in shape):
        raise ValidationError(f"input {tensor.name!r}: shape {list(shape)} has a negative size")
    try:
        with np.errstate(over="raise"):
            array = np.asarray(tensor.data, dtype=dtype)
    except (ValueError, TypeError, OverflowError, FloatingPointError) as error:
        reason = bounded_reason(error)
        raise ValidationError(
            f"input {tensor.name!r}: data does not fit datatype {datatype}: {reason}"
        ) from None
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValidationError(
            f"input {tensor.name!r}: values beyond the range of {datatype} (or not finite)"
        )
    expected = prod(shape)
    if array.size != expected:
        raise ValidationError(
            f"input {tensor.name!r}: shape {list(shape)} needs {expected} values, got {array.size}"
        )
    return array.reshape(shape)


def _as_rows(array: npt.NDArray[Any], name: str) -> npt.NDArray[Any]:
    if array.ndim == 0:
        raise ValidationError(f"input {name!r}: a scalar has no rows; give a shape like [1, n]")
    if array.ndim == 1:
        # OIP: a 1-D tensor of shape [N] is N rows of one value each.
        return array.reshape(-1, 1)
    return array.reshape(array.shape[0], prod(array.shape[1:]))


def request_matrix(
    inputs: Sequence[Tensor],
    *,
    n_features: int | None = None,
    dtype: npt.DTypeLike | None = None,
) -> npt.NDArray[Any]:
    """One 2-D feature matrix from the request's inputs.

    A single input of shape ``[rows, features]`` is the usual form; several inputs are
    placed side by side as columns, in request order. ``n_features`` is what the model
    was fitted on; ``dtype`` is what it computes in (the request's own datatype when
    ``None``).
    """
    if not inputs:
        raise ValidationError("the request has no inputs")
    columns = [_as_rows(tensor_to_array(tensor), tensor.name) for tensor in inputs]
    rows = columns[0].shape[0]
    for tensor, column in zip(inputs[1:], columns[1:], strict=True):
        if column.shape[0] != rows:
            raise ValidationError(
                f"input {tensor.name!r} has {column.shape[0]} rows but input "
                f"{inputs[0].name!r} has {rows}"
            )
    if rows == 0:
        raise ValidationError(f"input {inputs[0].name!r} has 0 rows; send at least one")
    matrix = columns[0] if len(columns) == 1 else np.hstack(columns)
    got = matrix.shape[1]
    if n_features is not None and got != n_features:
        hint = ""
        if len(inputs) == 1 and len(inputs[0].shape) == 1 and inputs[0].shape[0] == n_features:
            hint = (
                f" (a 1-D input of shape [{n_features}] is {n_features} rows of one value; "
                f"send shape [1, {n_features}] for one row)"
            )
        raise ValidationError(f"expected {n_features} features per row, got {got}{hint}")
    if dtype is not None and matrix.dtype != np.dtype(dtype):
        try:
            matrix = matrix.astype(dtype)
        except (ValueError, TypeError, OverflowError) as error:
            raise ValidationError(
                f"input data cannot be converted to {np.dtype(dtype)}: {bounded_reason(error)}"
            ) from None
    return matrix


def _concrete(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Give an object array its natural dtype (ints stay ints, text stays text)."""
    if array.dtype.kind != "O" or array.size == 0:
        return array
    items = array.ravel().tolist()
    if all(isinstance(item, str) for item in items):
        return array
    try:
        inferred = np.asarray(items)
    except (ValueError, TypeError):
        return array
    if inferred.dtype.kind in "biuf":
        return inferred.reshape(array.shape)
    return array


def _text(item: Any) -> str:
    if isinstance(item, bytes):
        return item.decode("utf-8", errors="replace")
    return item if isinstance(item, str) else str(item)


def array_to_tensor(name: str, values: npt.ArrayLike, *, datatype: str | None = None) -> Tensor:
    """A named OIP tensor holding ``values`` (flat data, row-major, JSON-ready)."""
    array = _concrete(np.asarray(values))
    if datatype is None:
        datatype = datatype_of(array.dtype)
    elif datatype != "BYTES":
        array = array.astype(OIP_DATATYPES[datatype])
    flat = array.ravel()
    data: list[Any] = flat.tolist()
    if datatype == "BYTES":
        data = [_text(item) for item in data]
    return Tensor(name=name, shape=tuple(int(d) for d in array.shape), datatype=datatype, data=data)


def label_tensor(labels: npt.ArrayLike) -> Tensor:
    """Predicted classes: ``INT64`` for integer classes, ``BYTES`` for text, else as is."""
    array = _concrete(np.asarray(labels))
    kind = array.dtype.kind
    datatype = "INT64" if kind in "iu" else "BOOL" if kind == "b" else None
    return array_to_tensor(LABEL, array, datatype=datatype)


def predictions_tensor(values: npt.ArrayLike) -> Tensor:
    """Regression outputs as ``FP64``; a trailing dimension of 1 is dropped."""
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    return array_to_tensor(PREDICTIONS, array, datatype="FP64")


def is_label_like(values: npt.ArrayLike) -> bool:
    """True for class-like results (integers, booleans, text) rather than quantities."""
    return _concrete(np.asarray(values)).dtype.kind in "biuUSO"


def estimator_outputs(
    predicted: npt.ArrayLike,
    probabilities: npt.ArrayLike | None,
    *,
    classifier: bool,
) -> list[Tensor]:
    """``label`` (+ ``probabilities``) for a classifier, ``predictions`` otherwise."""
    if not classifier:
        if is_label_like(predicted):
            return [label_tensor(predicted)]
        return [predictions_tensor(predicted)]
    outputs = [label_tensor(predicted)]
    if probabilities is not None:
        matrix = np.asarray(probabilities)
        if matrix.ndim == 2:
            # Keep the model's float width: FP64 from scikit-learn, FP32 from ONNX.
            if matrix.dtype.kind != "f":
                matrix = matrix.astype(np.float64)
            outputs.append(array_to_tensor(PROBABILITIES, matrix))
    return outputs


def check_rows(outputs: Iterable[Tensor], rows: int, *, source: str) -> None:
    """Refuse results whose row count differs from the request's (a model bug)."""
    for tensor in outputs:
        got = tensor.shape[0] if tensor.shape else 1
        if got != rows:
            raise ValueError(f"{source} returned {got} rows in {tensor.name!r} for {rows} inputs")


def select_outputs(outputs: Sequence[Tensor], requested: Sequence[str]) -> tuple[Tensor, ...]:
    """The outputs the request asked for, in its order; all of them when it asked none."""
    if not requested:
        return tuple(outputs)
    by_name = {tensor.name: tensor for tensor in outputs}
    missing = [name for name in requested if name not in by_name]
    if missing:
        raise ValidationError(
            f"requested output(s) {', '.join(map(repr, missing))} do not exist; "
            f"this model gives {', '.join(map(repr, by_name)) or 'no outputs'}"
        )
    return tuple(by_name[name] for name in requested)


def matrix_spec(name: str, datatype: str, n_features: int | None) -> TensorSpec:
    """The spec of a rows x features input; -1 marks a size not fixed by the model."""
    width = -1 if n_features is None else n_features
    return TensorSpec(name=name, datatype=datatype, shape=(-1, width))


def classifier_output_specs(
    label_datatype: str, probabilities_datatype: str | None, n_classes: int | None
) -> tuple[TensorSpec, ...]:
    specs = [TensorSpec(LABEL, label_datatype, (-1,))]
    if probabilities_datatype is not None:
        width = -1 if n_classes is None else n_classes
        specs.append(TensorSpec(PROBABILITIES, probabilities_datatype, (-1, width)))
    return tuple(specs)
