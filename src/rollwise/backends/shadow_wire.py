"""The shadow host's wire format, shared by the gateway (``shadow_host``) and its child
process (``shadow_child``): the messages they exchange over their socket pair, each a
pickle behind a length header, and the errors inside them.

What the child answers comes back as the answer or as the same kind of error the backend
would have raised in the gateway: a refusal stays a refusal (``ValidationError`` /
``RequestRejected``), a timeout a ``BackendTimeout``, anything else a ``BackendError``.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rollwise.errors import (
    BackendError,
    BackendLoadError,
    BackendTimeout,
    BackendUnavailable,
    PayloadTooLarge,
    RequestRejected,
    ValidationError,
)

MAX_FRAME_BYTES = 1 << 30
"""A frame longer than this is a corrupt stream, not a message."""

_HEADER = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class HostedModel:
    """One backend of the gateway as the child rebuilds it. ``token`` is new for every
    backend object, so that a reloaded version (same options, maybe the same file
    name, new contents) is never answered by the model the child loaded before."""

    token: int
    kind: str
    name: str
    options: Mapping[str, Any]
    base_dir: str
    artifact_sha256: str
    """What the gateway loaded; the child refuses a file with other contents."""
    timeout_s: float


# -- messages -------------------------------------------------------------------------------------
# Parent → child: ("model", HostedModel) to load it, ("predict", call id, token, request),
# ("forget", token). Child → parent: ("ok", call id, response), ("error", call id, error),
# ("loaded", token, None or error) once a load ended, ("unloaded", token, None).

_ErrorCode = Literal["rejected", "invalid", "too_large", "timeout", "unavailable", "load", "failed"]
_WireError = tuple[_ErrorCode, str, str | None, int | None]
"""An exception as it crosses the socket: the rollwise errors take keyword arguments,
which pickle does not carry, so they go as (kind, message, version, upstream status)."""


def encode_error(error: Exception, version: str) -> _WireError:
    """``error`` raised in the child for version ``version``, ready to send."""
    message = str(error)
    if isinstance(error, RequestRejected):
        return "rejected", message, error.version, error.upstream_status
    if isinstance(error, PayloadTooLarge):
        return "too_large", message, None, None
    if isinstance(error, ValidationError):
        return "invalid", message, None, None
    if isinstance(error, BackendError):
        code: _ErrorCode = (
            "timeout"
            if isinstance(error, BackendTimeout)
            else "unavailable"
            if isinstance(error, BackendUnavailable)
            else "load"
            if isinstance(error, BackendLoadError)
            else "failed"
        )
        return code, message, error.version or version, None
    return (
        "failed",
        f"version {version!r} failed in the shadow host: {type(error).__name__}: {message}",
        version,
        None,
    )


def decode_error(wire: _WireError) -> Exception:
    """The exception the gateway raises for an error the child sent."""
    code, message, version, upstream_status = wire
    if code == "rejected":
        return RequestRejected(message, version=version or "", upstream_status=upstream_status)
    if code == "too_large":
        return PayloadTooLarge(message)
    if code == "invalid":
        return ValidationError(message)
    kind = {
        "timeout": BackendTimeout,
        "unavailable": BackendUnavailable,
        "load": BackendLoadError,
    }.get(code, BackendError)
    return kind(message, version=version)


def _frame(message: object) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


class _Frames:
    """Splits a byte stream into messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """The messages ``data`` completes, unpickled."""
        return [pickle.loads(body) for body in self.split(data)]

    def split(self, data: bytes) -> list[bytes]:
        """The pickled bodies of the messages ``data`` completes, for a reader that
        unpickles them later, a few at a time."""
        buffer = self._buffer
        buffer += data
        bodies: list[bytes] = []
        start = 0
        size = len(buffer)
        while size - start >= _HEADER.size:
            (length,) = _HEADER.unpack_from(buffer, start)
            if length > MAX_FRAME_BYTES:
                raise ValueError(f"a frame of {length} bytes: the stream is corrupt")
            end = start + _HEADER.size + length
            if end > size:
                break
            bodies.append(bytes(buffer[start + _HEADER.size : end]))
            start = end
        if start:
            del buffer[:start]
        return bodies
