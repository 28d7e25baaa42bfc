"""Maps the error tree to gRPC status codes, as ``server.errors`` maps it to HTTP
statuses; the only place that knows both the tree and gRPC's codes.

| error | HTTP | gRPC |
| --- | --- | --- |
| ``ValidationError``, ``BadRequest``, ``RequestRejected`` | 400/422 | INVALID_ARGUMENT |
| ``PayloadTooLarge`` | 413 | RESOURCE_EXHAUSTED |
| ``ConfigError`` (a bad value in a command) | 422 | INVALID_ARGUMENT |
| ``NotFound`` (unknown model or version) | 404 | NOT_FOUND |
| ``Conflict`` | 409 | FAILED_PRECONDITION |
| ``Forbidden`` (a token without the operator role) | 403 | PERMISSION_DENIED |
| ``AuthError`` (no token, or a bad one) | 401 | UNAUTHENTICATED |
| ``BackendTimeout`` | 504 | DEADLINE_EXCEEDED |
| ``BackendUnavailable`` (no ready version, model not loaded yet) | 503 | UNAVAILABLE |
| ``BackendError`` (the version failed) | 502 | INTERNAL |
| ``StoreError`` | 503 | UNAVAILABLE |
| anything else | 500 | UNKNOWN |

Bad input is INVALID_ARGUMENT, whether rollwise refused it or the version (or its
upstream server) did. A message over the size limit is RESOURCE_EXHAUSTED, as grpc
itself answers one over ``max_receive_message_length``.

A version's failure is INTERNAL, not UNAVAILABLE: clients and proxies retry
UNAVAILABLE on their own (it means "try again, it will work"), which would send a
failing version each request again; UNAVAILABLE is kept for "no version can take it
now", which a retry may well fix.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from rollwise.errors import (
    AuthError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RequestRejected,
    RollwiseError,
    StoreError,
    ValidationError,
)

_CODES: tuple[tuple[type[RollwiseError], grpc.StatusCode], ...] = (
    (PayloadTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Conflict, grpc.StatusCode.FAILED_PRECONDITION),
    (Forbidden, grpc.StatusCode.PERMISSION_DENIED),
    (AuthError, grpc.StatusCode.UNAUTHENTICATED),
    (BackendTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (BackendUnavailable, grpc.StatusCode.UNAVAILABLE),
    (BackendError, grpc.StatusCode.INTERNAL),
    # The store is busy or down: the caller may retry, nothing was half-applied.
    (StoreError, grpc.StatusCode.UNAVAILABLE),
)

_UPSTREAM_TOO_LARGE = 413


def code_of(error: RollwiseError) -> grpc.StatusCode:
    if isinstance(error, RequestRejected) and error.upstream_status == _UPSTREAM_TOO_LARGE:
        # An upstream REST server found the request too large: so would gRPC have.
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.UNKNOWN


@dataclass(frozen=True, slots=True)
class Refusal:
    """How the gRPC port answers an error: its code, and details that say what was
    wrong (and which version, when one was asked)."""

    code: grpc.StatusCode
    details: str


def refusal_of(error: RollwiseError) -> Refusal:
    details = str(error)
    version = getattr(error, "version", None)
    if version and f"{version!r}" not in details and f"version {version}" not in details:
        details = f"{details} (version {version!r})"
    return Refusal(code_of(error), details)
