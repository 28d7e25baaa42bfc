"""The Open Inference Protocol (V2) over gRPC: the protocol's messages, its service, and
their conversion to and from rollwise's own requests and responses.

``grpc_predict_v2.proto`` is the protocol (KServe's, Apache-2.0); the ``_pb2`` module and
its stub are generated from it and checked in (``make grpc-code``). ``convert`` turns
messages into ``InferenceRequest``/``InferenceResponse`` values and back, without I/O
(one tensor's values in ``tensors``, parameters in ``parameters``); ``service`` binds
the service's methods for a server and a client. The gateway's gRPC
port (``server.grpc_service``) and the ``http`` backend's ``protocol: grpc``
(``backends.grpc_upstream``) are built on them.

grpcio and protobuf come with the ``grpc`` extra (``pip install 'rollwise[grpc]'``):
nothing here is imported unless a gRPC port or a gRPC upstream is configured.
"""

from __future__ import annotations

from rollwise.errors import ConfigError


def require_grpc(what: str) -> None:
    """Raise ``ConfigError`` naming ``what`` (the key that asks for gRPC) unless grpcio
    and a protobuf new enough for the generated code are installed."""
    try:
        import grpc.aio  # noqa: F401

        from rollwise.grpc_v2 import grpc_predict_v2_pb2  # noqa: F401
    # ImportError, or protobuf's VersionError for a runtime older than the generated code.
    except Exception as error:
        raise ConfigError(
            f"{what} needs grpcio and protobuf>=6.31.1: pip install 'rollwise[grpc]' "
            f"({type(error).__name__}: {error})"
        ) from None
