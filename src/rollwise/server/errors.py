"""Maps the error tree to HTTP status codes; the only place that knows both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
from rollwise.server.payloads import BadRequest

_STATUS: tuple[tuple[type[RollwiseError], int], ...] = (
    (BadRequest, 400),
    (PayloadTooLarge, 413),
    (ValidationError, 422),
    (ConfigError, 422),
    (NotFound, 404),
    (Conflict, 409),
    (Forbidden, 403),
    (AuthError, 401),
    (BackendTimeout, 504),
    (BackendUnavailable, 503),
    (BackendError, 502),
    # The store is busy or down: the caller may retry, nothing was half-applied.
    (StoreError, 503),
)


# An upstream's own refusal keeps its status where it means the same to the caller.
_UPSTREAM_STATUSES = frozenset({400, 413, 422})


def status_of(error: RollwiseError) -> int:
    if isinstance(error, RequestRejected) and error.upstream_status in _UPSTREAM_STATUSES:
        return error.upstream_status
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """How any route answers a refusal: status, JSON body, and whether to ask for a token."""

    status: int
    body: dict[str, Any]
    wants_token: bool


def error_reply(error: RollwiseError) -> ErrorReply:
    status = status_of(error)
    body: dict[str, Any] = {"error": str(error)}
    version = getattr(error, "version", None)
    if version:
        body["version"] = version
    return ErrorReply(status, body, wants_token=status == 401)
