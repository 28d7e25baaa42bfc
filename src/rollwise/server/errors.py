"""Maps the error tree to HTTP status codes; the only place that knows both."""

from __future__ import annotations

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


def status_of(error: RollwiseError) -> int:
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500
