"""The ``http`` backend with ``protocol: grpc``: a version whose model server speaks the
Open Inference Protocol over gRPC (Triton, KServe, MLServer, another rollwise).

One grpc.aio channel per version, its calls multiplexed over one HTTP/2 connection;
``inference.GRPCInferenceService`` is called as ``grpc_v2.service`` binds it. ``load``
checks ModelReady and reads ModelMetadata; predictions are ModelInfer calls with
``timeout_s`` as their deadline, the inputs sent as raw contents (as tritonclient sends
them) and the answer read in either form.

Options: ``url`` (required: ``grpc://host:port``, or ``http://host:port``), ``model``
(the upstream's name for the model; default: the version name), ``timeout_s`` (per
call, default 5) and ``headers`` (sent with every call as gRPC metadata, their names
lowercased). The connection pool's options are for ``protocol: rest`` and refused here.

An upstream's status is judged as the REST ``http`` backend judges HTTP statuses:
INVALID_ARGUMENT and OUT_OF_RANGE say the request itself is bad, so they become
``RequestRejected`` carrying the upstream's own message, the caller's error;
DEADLINE_EXCEEDED is the version's ``BackendTimeout``; every other code (UNAVAILABLE,
NOT_FOUND for a model gone, UNAUTHENTICATED for the version's credentials, INTERNAL,
RESOURCE_EXHAUSTED for an upstream overloaded) is the version's failure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import grpc.aio

from rollwise.backends.messages import InferenceRequest, InferenceResponse, ModelMetadata
from rollwise.backends.options import check_options
from rollwise.errors import (
    BackendError,
    BackendLoadError,
    BackendTimeout,
    ConfigError,
    RequestRejected,
)
from rollwise.grpc_v2 import convert
from rollwise.grpc_v2 import grpc_predict_v2_pb2 as pb
from rollwise.grpc_v2.service import Stub

__all__ = ["CALLER_ERROR_CODES", "GrpcUpstreamBackend", "inference_error"]

CALLER_ERROR_CODES = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE})
"""Upstream codes that mean the inference request itself is bad."""

POOL_OPTIONS = ("max_connections", "max_connecting", "min_idle", "idle_timeout_s")
"""The REST connection pool's options: a gRPC channel has no pool to size."""

MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""The largest answer taken from an upstream (grpc's own default, 4 MiB, would refuse a
batch of images); a larger one fails the call as the version's."""

_DETAIL_LIMIT = 300
_METADATA_KEY = re.compile(r"[0-9a-z_.-]+")
_RESERVED_KEYS = frozenset({"content-type", "te", "user-agent", "host", "connection"})


class GrpcUpstreamBackend:
    """One version whose model runs behind an OIP V2 gRPC endpoint."""

    kind: str = "http"
    artifact_sha256: str = ""
    """An upstream server has no artifact rollwise could hash."""

    def __init__(self, name: str, options: Mapping[str, Any], base_dir: Path) -> None:
        # base_dir is part of every backend's constructor; nothing here is a file.
        del base_dir
        self.name = name
        where = f"versions.{name}"
        self.url, self.target = _parse_url(options.get("url"), f"{where}.url")
        check_options("http", {k: v for k, v in options.items() if k != "backend"}, where)
        for key in POOL_OPTIONS:
            if key in options:
                raise ConfigError(
                    f"{where}.{key}: only for protocol: rest; a gRPC version multiplexes "
                    "its calls over one HTTP/2 connection"
                )
        self.model: str = options.get("model", name)
        self.timeout_s = float(options.get("timeout_s", 5.0))
        self._call_metadata = _parse_metadata(options.get("headers"), f"{where}.headers")
        self._channel: grpc.aio.Channel | None = None
        self._stub: Stub | None = None
        self._metadata = ModelMetadata(
            platform="", extra={"upstream": self.url, "model": self.model}
        )

    # -- the Backend contract ------------------------------------------------------------

    async def load(self) -> None:
        await self.close()
        # Created here, in the event loop that will use it: a grpc.aio channel is bound
        # to the loop it was made in.
        channel = grpc.aio.insecure_channel(
            self.target, options=[("grpc.max_receive_message_length", MAX_ANSWER_BYTES)]
        )
        stub = Stub(channel)
        failure: BaseException | None = None
        try:
            metadata = await self._check(stub)
        except BaseException as error:
            failure = error
        if failure is not None:
            # Closed after the try, not in its handler (see rollwise.compilation).
            await channel.close()
            raise failure
        self._metadata = metadata
        self._channel, self._stub = channel, stub

    def ready(self) -> bool:
        return self._stub is not None

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        stub = self._stub
        if stub is None:
            raise BackendError(f"version {self.name} is not loaded", version=self.name)
        message = convert.request_to_proto(request, model=self.model)
        try:
            reply = await stub.model_infer(
                message, timeout=self.timeout_s, metadata=self._call_metadata
            )
        except grpc.aio.AioRpcError as error:
            raise inference_error(
                error, version=self.name, url=self.url, timeout_s=self.timeout_s
            ) from None
        try:
            return convert.response_from_proto(reply)
        except ValueError as error:
            raise BackendError(
                f"version {self.name}: upstream {self.url} sent a malformed inference "
                f"response: {error}",
                version=self.name,
            ) from None

    async def close(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()

    def metadata(self) -> ModelMetadata:
        return self._metadata

    # -- internals ----------------------------------------------------------------------------

    async def _check(self, stub: Stub) -> ModelMetadata:
        """The model's metadata once ModelReady says it is ready; ``BackendLoadError``
        with the reason otherwise."""
        where = f"version {self.name}: upstream {self.url}"
        try:
            ready = await stub.model_ready(
                pb.ModelReadyRequest(name=self.model),
                timeout=self.timeout_s,
                metadata=self._call_metadata,
            )
            if not ready.ready:
                raise BackendLoadError(
                    f"{where} says model {self.model!r} is not ready (ModelReady)",
                    version=self.name,
                )
            answer = await stub.model_metadata(
                pb.ModelMetadataRequest(name=self.model),
                timeout=self.timeout_s,
                metadata=self._call_metadata,
            )
        except grpc.aio.AioRpcError as error:
            raise BackendLoadError(
                f"{where}: cannot load model {self.model!r}: {_described(error)}",
                version=self.name,
            ) from None
        return convert.metadata_from_proto(answer, upstream=self.url, model=self.model)


def inference_error(
    error: grpc.aio.AioRpcError, *, version: str, url: str, timeout_s: float
) -> BackendError | RequestRejected:
    """The error an upstream's status stands for: the caller's (``RequestRejected``)
    for ``CALLER_ERROR_CODES``, a ``BackendTimeout`` for DEADLINE_EXCEEDED, else the
    version's failure."""
    code = error.code()
    if code in CALLER_ERROR_CODES:
        # The caller sees this message: the upstream's words, not where it runs.
        return RequestRejected(
            f"version {version!r} refused the request ({code.name} from its server): "
            f"{_detail(error)}",
            version=version,
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return BackendTimeout(
            f"version {version}: upstream {url} did not answer within {timeout_s:g} s",
            version=version,
        )
    return BackendError(
        f"version {version}: upstream {url} failed the inference request: {_described(error)}",
        version=version,
    )


def _described(error: grpc.aio.AioRpcError) -> str:
    return f"{error.code().name}: {_detail(error)}"


def _detail(error: grpc.aio.AioRpcError) -> str:
    text = (error.details() or "").strip() or "(no details)"
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"


# -- options ------------------------------------------------------------------------------------


def _parse_url(value: Any, key: str) -> tuple[str, str]:
    """(url as given, ``host:port`` target) of the ``url`` option."""
    shape = "a URL like grpc://host:8001"
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: must be {shape}, got {value!r}")
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("grpc", "http") or not parts.hostname:
        hint = "; TLS is not supported yet" if parts.scheme in ("grpcs", "https") else ""
        raise ConfigError(f"{key}: must be {shape}{hint}, got {value!r}")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(
            f"{key}: a gRPC address is a host and a port, with no path, query or "
            f"credentials, got {value!r}"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{key}: bad port in {value!r}") from None
    if port is None:
        raise ConfigError(
            f"{key}: give the port of the gRPC endpoint (Triton's is 8001), got {value!r}"
        )
    host = parts.hostname
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return url, target


def _parse_metadata(value: Any, key: str) -> tuple[tuple[str, str], ...]:
    """The ``headers`` option as gRPC call metadata: names lowercased, values text."""
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: must be a mapping of header names to values, got {value!r}")
    pairs: list[tuple[str, str]] = []
    for name, item in value.items():
        lowered = str(name).lower()
        if not _METADATA_KEY.fullmatch(lowered) or lowered.endswith("-bin"):
            raise ConfigError(
                f"{key}.{name}: a gRPC metadata name is letters, digits, '-', '_' and '.', "
                "not ending in -bin"
            )
        if lowered in _RESERVED_KEYS or lowered.startswith("grpc-"):
            raise ConfigError(f"{key}.{name}: gRPC sets this header itself")
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise ConfigError(f"{key}.{name}: header values must be strings, got {item!r}")
        text = str(item)
        if not text.isascii() or not text.isprintable():
            raise ConfigError(f"{key}.{name}: header values must be printable ASCII")
        pairs.append((lowered, text))
    return tuple(pairs)
