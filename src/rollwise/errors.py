"""The one error tree of rollwise. No HTTP here: the server maps families to status codes."""

from __future__ import annotations


class RollwiseError(Exception):
    """Base of every error rollwise raises on purpose."""


class ConfigError(RollwiseError):
    """A config file or rollout spec is invalid; the message names the key and the value."""


class ValidationError(RollwiseError):
    """A request or command carries bad input (wrong shape, bad weights, ...)."""


class PayloadTooLarge(ValidationError):
    """A request body exceeds the configured limit."""


class RequestRejected(ValidationError):
    """A model version refused the request as bad input (text for a numeric model, an
    upstream's own "bad request"): the caller's mistake, never the version's failure.

    The gateway counts it per version as a client error, apart from the version's
    errors. ``upstream_status`` is the status code the version's own server answered
    with (``http`` backend), None otherwise. The message quotes what the version said,
    which may echo the caller's input, so it is cut to ``MAX_MESSAGE_CHARS``.
    """

    MAX_MESSAGE_CHARS = 500

    def __init__(self, message: str, *, version: str, upstream_status: int | None = None) -> None:
        limit = self.MAX_MESSAGE_CHARS
        if len(message) > limit:
            message = message[: limit - 1] + "…"
        super().__init__(message)
        self.version = version
        self.upstream_status = upstream_status


class NotFound(RollwiseError):
    """A model, version, request id or rollout does not exist."""


class Conflict(RollwiseError):
    """The request contradicts the current state (e.g. a rollout is already in progress)."""


class AuthError(RollwiseError):
    """Missing or invalid credentials."""


class Forbidden(AuthError):
    """Valid credentials without the role the action needs."""


class BackendError(RollwiseError):
    """A model version failed to load or to answer."""

    def __init__(self, message: str, *, version: str | None = None) -> None:
        super().__init__(message)
        self.version = version


class BackendLoadError(BackendError):
    """A model version could not be loaded (bad file, refused pickle, unreachable server)."""


class BackendTimeout(BackendError):
    """A model version did not answer within its timeout."""


class BackendUnavailable(BackendError):
    """No ready version can answer the request."""


class StoreError(RollwiseError):
    """The state store failed or is inconsistent."""
