"""Calling a gateway's gRPC port from tests: the official Triton client, and a plain grpc
channel with rollwise's messages where a test needs what tritonclient hides (the
reply's metadata, typed contents, malformed tensors)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc as triton

from rollwise.grpc_v2 import grpc_predict_v2_pb2 as pb
from rollwise.grpc_v2.service import SERVICE
from support.gateway import free_port

Metadata = Sequence[tuple[str, str]]

SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]


def with_grpc_port(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with a free ``server.grpc_port``."""
    server = dict(config.get("server") or {})
    server["grpc_port"] = free_port()
    return {**config, "server": server}


def grpc_address(config: dict[str, Any]) -> str:
    return f"127.0.0.1:{config['server']['grpc_port']}"


def triton_client(address: str) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(address)


def triton_rows(rows: list[list[float]], datatype: str = "FP32") -> triton.InferInput:
    """The rows as tritonclient sends them: one input, raw contents."""
    dtype = np.float32 if datatype == "FP32" else np.float64
    tensor = triton.InferInput("input-0", [len(rows), len(rows[0])], datatype)
    tensor.set_data_from_numpy(np.array(rows, dtype=dtype))
    return tensor


def answered_version(result: triton.InferResult) -> str:
    return str(result.get_response().model_version)


def rows_request(
    model: str, rows: list[list[float]], *, datatype: str = "FP64", raw: bool = False, **fields: Any
) -> pb.ModelInferRequest:
    """A ModelInferRequest of ``rows``, its values typed (``contents``) or raw."""
    shape = [len(rows), len(rows[0])]
    flat = [value for row in rows for value in row]
    message = pb.ModelInferRequest(model_name=model, **fields)
    tensor = message.inputs.add(name="input-0", datatype=datatype, shape=shape)
    dtype = "<f4" if datatype == "FP32" else "<f8"
    if raw:
        message.raw_input_contents.append(np.array(flat, dtype=dtype).tobytes())
    elif datatype == "FP32":
        tensor.contents.fp32_contents.extend(flat)
    else:
        tensor.contents.fp64_contents.extend(flat)
    return message


class Channel:
    """A plain grpc channel to the service, with every reply's metadata at hand."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)

    def _method(self, name: str, request: Any, response: Any) -> Any:
        return self.channel.unary_unary(
            f"/{SERVICE}/{name}",
            request_serializer=request.SerializeToString,
            response_deserializer=response.FromString,
        )

    def infer(
        self, message: pb.ModelInferRequest, metadata: Metadata = (), timeout_s: float = 30.0
    ) -> tuple[pb.ModelInferResponse, dict[str, str]]:
        """The reply and its initial metadata; ``grpc.RpcError`` for a refusal."""
        call = self._method("ModelInfer", pb.ModelInferRequest, pb.ModelInferResponse)
        reply, state = call.with_call(message, metadata=tuple(metadata), timeout=timeout_s)
        return reply, dict(state.initial_metadata())

    def metadata(
        self, name: str, metadata: Metadata = (), version: str = ""
    ) -> tuple[pb.ModelMetadataResponse, dict[str, str]]:
        call = self._method("ModelMetadata", pb.ModelMetadataRequest, pb.ModelMetadataResponse)
        reply, state = call.with_call(
            pb.ModelMetadataRequest(name=name, version=version),
            metadata=tuple(metadata),
            timeout=30,
        )
        return reply, dict(state.initial_metadata())

    def close(self) -> None:
        self.channel.close()


@contextlib.contextmanager
def channel(address: str) -> Iterator[Channel]:
    opened = Channel(address)
    try:
        yield opened
    finally:
        opened.close()


def refusal(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """A refused call's code, details and trailing metadata."""
    call: Any = error
    return call.code(), call.details(), dict(call.trailing_metadata() or ())
