"""The ``onnx`` backend: a model run by onnxruntime on the CPU.

Input names and dtypes come from the session. Outputs are renamed to the OIP names the
other backends use: a classifier's label output (``output_label`` from skl2onnx)
becomes ``label`` and its probabilities (``output_probability``, either a tensor or the
list of per-row dicts that skl2onnx's ZipMap produces) become ``probabilities``; a
single numeric output becomes ``predictions``. Other outputs keep their names.

Options: ``path`` (or ``url`` with ``sha256``, and ``max_bytes``, ``download_timeout_s``:
see ``rollwise.backends.inprocess``), ``sha256``, ``intra_op_threads`` (default 1, as many
requests already run in parallel on the shared pool), ``inter_op_threads``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rollwise.backends.base import InferenceRequest, ModelMetadata, Tensor, TensorSpec
from rollwise.backends.inprocess import InProcessBackend
from rollwise.backends.tensors import (
    LABEL,
    PREDICTIONS,
    PROBABILITIES,
    array_to_tensor,
    bounded_reason,
    label_tensor,
    predictions_tensor,
    request_matrix,
    tensor_to_array,
)
from rollwise.errors import BackendLoadError, RequestRejected, ValidationError

LABEL_NAMES = ("output_label", "label", "labels")
PROBABILITY_NAMES = ("output_probability", "output_probabilities", "probabilities", "probability")

# onnxruntime type strings -> (numpy dtype, OIP datatype)
ORT_TYPES: Mapping[str, tuple[str, str]] = {
    "tensor(float)": ("float32", "FP32"),
    "tensor(double)": ("float64", "FP64"),
    "tensor(float16)": ("float16", "FP16"),
    "tensor(int64)": ("int64", "INT64"),
    "tensor(int32)": ("int32", "INT32"),
    "tensor(int16)": ("int16", "INT16"),
    "tensor(int8)": ("int8", "INT8"),
    "tensor(uint64)": ("uint64", "UINT64"),
    "tensor(uint32)": ("uint32", "UINT32"),
    "tensor(uint16)": ("uint16", "UINT16"),
    "tensor(uint8)": ("uint8", "UINT8"),
    "tensor(bool)": ("bool", "BOOL"),
    "tensor(string)": ("object", "BYTES"),
}


@dataclass(frozen=True, slots=True)
class _Port:
    name: str
    type: str
    shape: tuple[int, ...]
    """-1 where the model leaves a dimension free."""

    @property
    def dtype(self) -> str | None:
        found = ORT_TYPES.get(self.type)
        return found[0] if found else None

    @property
    def datatype(self) -> str:
        found = ORT_TYPES.get(self.type)
        return found[1] if found else "BYTES"


def _port(arg: Any) -> _Port:
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or ()))
    return _Port(name=str(arg.name), type=str(arg.type), shape=shape)


class OnnxBackend(InProcessBackend):
    """An ONNX model in an onnxruntime ``InferenceSession`` (CPU provider)."""

    kind = "onnx"
    platform = "onnxruntime"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session: Any = None
        self._inputs: tuple[_Port, ...] = ()
        self._outputs: tuple[_Port, ...] = ()
        self._label: _Port | None = None
        self._probabilities: _Port | None = None
        self._n_classes: int | None = None

    def _load_model(self) -> None:
        import onnxruntime as ort

        path, data = self._read_model_file()
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(self.options.get("intra_op_threads", 1))
        if "inter_op_threads" in self.options:
            options.inter_op_num_threads = int(self.options["inter_op_threads"])
        try:
            session = ort.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:
            raise BackendLoadError(
                f"version {self.name!r}: {path.name} is not a model onnxruntime can load: {error}",
                version=self.name,
            ) from error
        inputs = tuple(_port(arg) for arg in session.get_inputs())
        outputs = tuple(_port(arg) for arg in session.get_outputs())
        for port in inputs:
            if port.dtype is None:
                raise BackendLoadError(
                    f"version {self.name!r}: input {port.name!r} has type {port.type}, "
                    "which rollwise cannot feed",
                    version=self.name,
                )
        self._label = next((p for p in outputs if p.name in LABEL_NAMES), None)
        self._probabilities = next(
            (p for p in outputs if p.name in PROBABILITY_NAMES or p.type.startswith("seq(map(")),
            None,
        )
        probability_shape = self._probabilities.shape if self._probabilities else ()
        self._n_classes = (
            probability_shape[1]
            if len(probability_shape) == 2 and probability_shape[1] > 0
            else None
        )
        self._inputs, self._outputs = inputs, outputs
        self._session = session

    def _unload(self) -> None:
        self._session = None

    # -- answering --------------------------------------------------------------------

    def _feeds(self, request: InferenceRequest) -> dict[str, npt.NDArray[Any]]:
        if len(self._inputs) == 1:
            port = self._inputs[0]
            n_features = port.shape[1] if len(port.shape) == 2 and port.shape[1] > 0 else None
            matrix = request_matrix(request.inputs, n_features=n_features, dtype=port.dtype)
            return {port.name: matrix}
        # Several model inputs: match the request's tensors to them by name.
        given = {tensor.name: tensor for tensor in request.inputs}
        missing = [port.name for port in self._inputs if port.name not in given]
        if missing:
            raise ValidationError(
                f"the model needs inputs {', '.join(p.name for p in self._inputs)}; "
                f"missing {', '.join(missing)}"
            )
        feeds: dict[str, npt.NDArray[Any]] = {}
        for port in self._inputs:
            array = tensor_to_array(given[port.name])
            if len(port.shape) == 2 and array.ndim == 1:
                array = array.reshape(-1, 1)
            if len(port.shape) != array.ndim:
                raise ValidationError(
                    f"input {port.name!r}: expected {len(port.shape)} dimensions "
                    f"{list(port.shape)}, got shape {list(array.shape)}"
                )
            for axis, (want, got) in enumerate(zip(port.shape, array.shape, strict=True)):
                if axis > 0 and want > 0 and want != got:
                    raise ValidationError(
                        f"input {port.name!r}: expected {want} values on axis {axis}, got {got}"
                    )
            feeds[port.name] = _as_dtype(array, port) if port.dtype else array
        return feeds

    def _refusal(self, error: Exception) -> RequestRejected | None:
        # onnxruntime checks every feed's type, rank and fixed dimensions before it runs
        # the graph, and raises INVALID_ARGUMENT for a feed the model cannot take.
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

        return self._refused_input(error) if isinstance(error, InvalidArgument) else None

    async def _infer(self, request: InferenceRequest) -> list[Tensor]:
        session = self._session
        feeds = self._feeds(request)
        results: Sequence[Any] = await self._call(session.run, None, feeds)
        return self._to_tensors(results)

    def _to_tensors(self, results: Sequence[Any]) -> list[Tensor]:
        named = {port.name: value for port, value in zip(self._outputs, results, strict=True)}
        outputs: list[Tensor] = []
        if self._label is not None:
            outputs.append(label_tensor(named.pop(self._label.name)))
        if self._probabilities is not None:
            value = named.pop(self._probabilities.name)
            outputs.append(array_to_tensor(PROBABILITIES, _probability_matrix(value)))
        if not outputs and len(named) == 1:
            (value,) = named.values()
            array = np.asarray(value)
            if array.dtype.kind == "f":
                return [predictions_tensor(array)]
            return [label_tensor(array)]
        outputs.extend(array_to_tensor(name, value) for name, value in named.items())
        return outputs

    def metadata(self) -> ModelMetadata:
        if self._session is None:
            return ModelMetadata(platform=self.platform)
        inputs = tuple(TensorSpec(p.name, p.datatype, p.shape) for p in self._inputs)
        outputs: list[TensorSpec] = []
        rest = [p for p in self._outputs if p not in (self._label, self._probabilities)]
        if self._label is not None:
            outputs.append(TensorSpec(LABEL, _label_datatype(self._label), (-1,)))
        if self._probabilities is not None:
            width = -1 if self._n_classes is None else self._n_classes
            outputs.append(TensorSpec(PROBABILITIES, "FP32", (-1, width)))
        if not outputs and len(rest) == 1:
            port = rest[0]
            if port.datatype.startswith("FP"):
                outputs.append(TensorSpec(PREDICTIONS, "FP64", (-1,)))
            else:
                outputs.append(TensorSpec(LABEL, _label_datatype(port), (-1,)))
        else:
            outputs.extend(TensorSpec(p.name, p.datatype, p.shape) for p in rest)
        return ModelMetadata(
            platform=self.platform,
            inputs=inputs,
            outputs=tuple(outputs),
            extra={"onnx_outputs": [p.name for p in self._outputs]},
        )


def _as_dtype(array: npt.NDArray[Any], port: _Port) -> npt.NDArray[Any]:
    try:
        return array.astype(port.dtype)
    except (ValueError, TypeError, OverflowError) as error:
        raise ValidationError(
            f"input {port.name!r}: data cannot be converted to {port.datatype}: "
            f"{bounded_reason(error)}"
        ) from None


def _label_datatype(port: _Port) -> str:
    datatype = port.datatype
    return "INT64" if datatype.startswith(("INT", "UINT")) else datatype


def _probability_matrix(value: Any) -> npt.NDArray[Any]:
    """Probabilities as a rows x classes matrix, from a tensor or ZipMap's dicts."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        classes = list(value[0].keys())
        return np.asarray([[row[c] for c in classes] for row in value], dtype=np.float32)
    return np.asarray(value)
