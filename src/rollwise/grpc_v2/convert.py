"""Open Inference Protocol messages over gRPC, to and from rollwise's own values.

Pure functions, no I/O. A ``ModelInferRequest`` becomes the ``InferenceRequest`` that
REST JSON would have made, checked as strictly: every refusal is a ``ValidationError``
that names the input and says what was expected and what arrived. Answers go back the
way the request came: values in the ``contents`` field of their datatype, or all
tensors as ``raw_output_contents`` when the request sent raw contents (or an output
is FP16, which has no contents field). Requests to a gRPC upstream are always sent
raw, as ``tritonclient`` sends them; its answers are read in either form, and what is
wrong with one is a ``ValueError``, the upstream's fault.

One tensor's values are read and written by ``tensors``, parameters by ``parameters``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rollwise.backends.messages import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    Tensor,
    TensorSpec,
)
from rollwise.errors import ValidationError
from rollwise.grpc_v2 import grpc_predict_v2_pb2 as pb
from rollwise.grpc_v2.parameters import parameters_from_proto, parameters_to_proto
from rollwise.grpc_v2.tensors import CONTENTS_FIELD, decode, encode_raw, fill_contents, shown

__all__ = [
    "metadata_from_proto",
    "metadata_to_proto",
    "request_from_proto",
    "request_to_proto",
    "response_from_proto",
    "response_to_proto",
]


# -- requests in (the gateway's gRPC port) ----------------------------------------------------


def request_from_proto(message: pb.ModelInferRequest) -> InferenceRequest:
    """The ``InferenceRequest`` of a ``ModelInferRequest``; ``ValidationError`` says
    what is wrong with it."""
    inputs = message.inputs
    if not inputs:
        raise ValidationError("the request has no inputs: 'inputs' must hold at least one tensor")
    raw = message.raw_input_contents
    if raw and len(raw) != len(inputs):
        raise ValidationError(
            f"raw_input_contents holds {len(raw)} entries for {len(inputs)} inputs; "
            "it needs one per input, in the order of the inputs"
        )
    tensors: list[Tensor] = []
    for index, item in enumerate(inputs):
        if not item.name:
            raise ValidationError(f"inputs[{index}]: 'name' must be a non-empty string")
        label = f"input {shown(item.name)}"
        has_contents = item.HasField("contents")
        if raw and has_contents:
            raise ValidationError(
                f"{label} has contents while the request carries raw_input_contents; "
                "send every input one way"
            )
        try:
            tensors.append(
                decode(
                    item.name,
                    item.datatype,
                    tuple(item.shape),
                    item.contents if has_contents else None,
                    raw[index] if raw else None,
                    scalar_ok=False,
                )
            )
        except ValueError as error:
            raise ValidationError(f"{label}: {error}") from None
    rows = tensors[0].shape[0]
    for tensor in tensors[1:]:
        if tensor.shape[0] != rows:
            raise ValidationError(
                f"input {shown(tensor.name)} has {tensor.shape[0]} rows "
                f"but input {shown(tensors[0].name)} has {rows}"
            )
    outputs: list[str] = []
    for index, wanted in enumerate(message.outputs):
        if not wanted.name:
            raise ValidationError(f"outputs[{index}]: 'name' must be a non-empty string")
        outputs.append(wanted.name)
    try:
        parameters = parameters_from_proto(message.parameters)
    except ValueError as error:
        raise ValidationError(str(error)) from None
    return InferenceRequest(
        inputs=tuple(tensors), id=message.id, parameters=parameters, outputs=tuple(outputs)
    )


def response_to_proto(
    response: InferenceResponse, *, model: str, version: str, request_id: str, raw: bool
) -> pb.ModelInferResponse:
    """The ``ModelInferResponse`` of a version's answer: raw contents when ``raw`` (or
    when an output has no contents field), else each output's typed contents.
    ``ValueError`` when an output's data does not fit its datatype or shape."""
    message = pb.ModelInferResponse(model_name=model, model_version=version, id=request_id)
    parameters_to_proto(response.parameters, message.parameters)
    raw = raw or any(tensor.datatype not in CONTENTS_FIELD for tensor in response.outputs)
    for tensor in response.outputs:
        item = message.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        try:
            if raw:
                message.raw_output_contents.append(encode_raw(tensor))
            else:
                fill_contents(item.contents, tensor)
        except ValueError as error:
            raise ValueError(f"output {shown(tensor.name)}: {error}") from None
    return message


# -- requests out (the http backend's protocol: grpc) -----------------------------------------


def request_to_proto(
    request: InferenceRequest, *, model: str, version: str = ""
) -> pb.ModelInferRequest:
    """The ``ModelInferRequest`` for an upstream, every input as raw contents;
    ``ValidationError`` when an input's data does not fit its datatype."""
    message = pb.ModelInferRequest(model_name=model, model_version=version, id=request.id)
    parameters_to_proto(request.parameters, message.parameters)
    for tensor in request.inputs:
        message.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        try:
            message.raw_input_contents.append(encode_raw(tensor))
        except ValueError as error:
            raise ValidationError(f"input {shown(tensor.name)}: {error}") from None
    for name in request.outputs:
        message.outputs.add(name=name)
    return message


def response_from_proto(message: pb.ModelInferResponse) -> InferenceResponse:
    """The ``InferenceResponse`` of an upstream's answer; ``ValueError`` says what is
    wrong with it."""
    raw = message.raw_output_contents
    outputs = message.outputs
    if raw and len(raw) != len(outputs):
        raise ValueError(f"raw_output_contents holds {len(raw)} entries for {len(outputs)} outputs")
    tensors: list[Tensor] = []
    for index, item in enumerate(outputs):
        label = f"output {shown(item.name)}" if item.name else f"outputs[{index}]"
        if not item.name:
            raise ValueError(f"{label} has no name")
        try:
            tensors.append(
                decode(
                    item.name,
                    item.datatype,
                    tuple(item.shape),
                    item.contents if item.HasField("contents") else None,
                    raw[index] if raw else None,
                    scalar_ok=True,
                )
            )
        except ValueError as error:
            raise ValueError(f"{label}: {error}") from None
    return InferenceResponse(
        outputs=tuple(tensors),
        model_version=message.model_version,
        parameters=parameters_from_proto(message.parameters),
    )


# -- metadata ----------------------------------------------------------------------------------


def metadata_to_proto(
    name: str, versions: Sequence[str], metadata: ModelMetadata | None
) -> pb.ModelMetadataResponse:
    """The ``ModelMetadataResponse`` of a model; ``metadata``: its chosen version's,
    None while that version is not loaded (no platform, inputs or outputs then)."""
    message = pb.ModelMetadataResponse(name=name, versions=list(versions))
    if metadata is not None:
        message.platform = metadata.platform
        for spec in metadata.inputs:
            message.inputs.add(name=spec.name, datatype=spec.datatype, shape=spec.shape)
        for spec in metadata.outputs:
            message.outputs.add(name=spec.name, datatype=spec.datatype, shape=spec.shape)
    return message


def metadata_from_proto(
    message: pb.ModelMetadataResponse, *, upstream: str, model: str
) -> ModelMetadata:
    """What an upstream's ``ModelMetadataResponse`` says, as the ``http`` backend's
    REST metadata would."""
    extra: dict[str, Any] = {"upstream": upstream, "model": model}
    if message.name:
        extra["name"] = message.name
    if message.versions:
        extra["versions"] = list(message.versions)
    return ModelMetadata(
        platform=message.platform,
        inputs=_specs(message.inputs),
        outputs=_specs(message.outputs),
        extra=extra,
    )


def _specs(items: Iterable[pb.ModelMetadataResponse.TensorMetadata]) -> tuple[TensorSpec, ...]:
    return tuple(
        TensorSpec(name=item.name, datatype=item.datatype, shape=tuple(item.shape))
        for item in items
    )
