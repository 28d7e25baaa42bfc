"""``inference.GRPCInferenceService``, bound by hand for a grpc.aio server and client.

Six methods: what the gateway serves and what the ``http`` backend calls upstream.
Written out rather than generated (``_pb2_grpc``): this way every call is typed, and
the module imports under any grpcio of the ``grpc`` extra, where generated code
refuses to import under a grpcio older than its generator. A client calling a method
not bound here (a repository RPC) gets UNIMPLEMENTED from grpc itself.
"""

from __future__ import annotations

from typing import Any, Protocol

import grpc
import grpc.aio

from rollwise.grpc_v2 import grpc_predict_v2_pb2 as pb

SERVICE = "inference.GRPCInferenceService"

Context = grpc.aio.ServicerContext[Any, Any]


class Servicer(Protocol):
    """What serves the service: one coroutine per method."""

    async def server_live(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse: ...

    async def server_ready(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse: ...

    async def model_ready(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse: ...

    async def server_metadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse: ...

    async def model_metadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse: ...

    async def model_infer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse: ...


def handler(servicer: Servicer) -> grpc.GenericRpcHandler:
    """The service's methods, answered by ``servicer``, for ``server.add_generic_rpc_handlers``."""

    def method(call: Any, request: Any, response: Any) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_unary_rpc_method_handler(
            call,
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "ServerLive": method(servicer.server_live, pb.ServerLiveRequest, pb.ServerLiveResponse),
            "ServerReady": method(
                servicer.server_ready, pb.ServerReadyRequest, pb.ServerReadyResponse
            ),
            "ModelReady": method(servicer.model_ready, pb.ModelReadyRequest, pb.ModelReadyResponse),
            "ServerMetadata": method(
                servicer.server_metadata, pb.ServerMetadataRequest, pb.ServerMetadataResponse
            ),
            "ModelMetadata": method(
                servicer.model_metadata, pb.ModelMetadataRequest, pb.ModelMetadataResponse
            ),
            "ModelInfer": method(servicer.model_infer, pb.ModelInferRequest, pb.ModelInferResponse),
        },
    )


class Stub:
    """The service's methods called over a grpc.aio channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        def method(name: str, request: Any, response: Any) -> Any:
            return channel.unary_unary(
                f"/{SERVICE}/{name}",
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            )

        self.server_live: grpc.aio.UnaryUnaryMultiCallable[
            pb.ServerLiveRequest, pb.ServerLiveResponse
        ] = method("ServerLive", pb.ServerLiveRequest, pb.ServerLiveResponse)
        self.server_ready: grpc.aio.UnaryUnaryMultiCallable[
            pb.ServerReadyRequest, pb.ServerReadyResponse
        ] = method("ServerReady", pb.ServerReadyRequest, pb.ServerReadyResponse)
        self.model_ready: grpc.aio.UnaryUnaryMultiCallable[
            pb.ModelReadyRequest, pb.ModelReadyResponse
        ] = method("ModelReady", pb.ModelReadyRequest, pb.ModelReadyResponse)
        self.server_metadata: grpc.aio.UnaryUnaryMultiCallable[
            pb.ServerMetadataRequest, pb.ServerMetadataResponse
        ] = method("ServerMetadata", pb.ServerMetadataRequest, pb.ServerMetadataResponse)
        self.model_metadata: grpc.aio.UnaryUnaryMultiCallable[
            pb.ModelMetadataRequest, pb.ModelMetadataResponse
        ] = method("ModelMetadata", pb.ModelMetadataRequest, pb.ModelMetadataResponse)
        self.model_infer: grpc.aio.UnaryUnaryMultiCallable[
            pb.ModelInferRequest, pb.ModelInferResponse
        ] = method("ModelInfer", pb.ModelInferRequest, pb.ModelInferResponse)
