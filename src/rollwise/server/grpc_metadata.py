"""What the gRPC port reads from a call's metadata, the way the REST data plane reads
headers: the request id, a forced version, the operator's token and the sticky key.

Pure functions over plain values, no grpc: the service hands in the metadata as
``(key, value)`` pairs. gRPC metadata keys are lowercase, so a ``header:X-User-Id``
sticky key (kept lowercased by the config) is read from ``x-user-id``; a ``cookie:``
key from a ``cookie`` entry; a ``field:`` key from the request's parameters, as REST
reads it from the body's ``parameters``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rollwise.domain import StickyKey, StickyKind
from rollwise.server.dataplane import MAX_STICKY_KEY_BYTES
from rollwise.server.payloads import BadRequest

REQUEST_ID = "x-request-id"
FORCED_VERSION = "x-rollwise-version"
AUTHORIZATION = "authorization"
COOKIE = "cookie"

MAX_REQUEST_ID_CHARS = 128
"""A caller's request id longer than this (or not printable) is replaced by a new one."""


def metadata_map(items: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    """The call's metadata by key, the first of a repeated key winning as for HTTP
    headers; binary values (``-bin`` keys) are read as latin-1, one character a byte."""
    found: dict[str, str] = {}
    for key, value in items or ():
        if key not in found:
            found[key] = value.decode("latin-1") if isinstance(value, bytes) else value
    return found


def usable_request_id(given: str | None) -> str | None:
    """The caller's request id when it can be used as one, else None (a new one is made)."""
    if given and len(given) <= MAX_REQUEST_ID_CHARS and given.isprintable():
        return given
    return None


def forced_version(model_version: str, metadata: Mapping[str, str]) -> str | None:
    """The version the call forces: ``model_version`` of the request, else the
    ``x-rollwise-version`` metadata, else None (routing chooses)."""
    if model_version:
        return model_version
    return metadata.get(FORCED_VERSION) or None


def sticky_key(
    sticky: StickyKey | None, metadata: Mapping[str, str], parameters: Mapping[str, Any]
) -> str | None:
    """The call's sticky key, at most ``MAX_STICKY_KEY_BYTES`` long (else ``BadRequest``,
    INVALID_ARGUMENT); None when the model has none or the call carries none."""
    if sticky is None:
        return None
    key: str | None
    if sticky.kind is StickyKind.HEADER:
        key = metadata.get(sticky.name)
        where = f"metadata {sticky.name}"
    elif sticky.kind is StickyKind.COOKIE:
        key = _cookie(metadata.get(COOKIE), sticky.name)
        where = f"cookie {sticky.name}"
    else:
        key = _parameter(parameters, sticky.name)
        where = f"parameter {sticky.name!r}"
    if key is not None and len(key) > MAX_STICKY_KEY_BYTES // 4:
        size = len(key.encode("utf-8", "surrogatepass"))
        if size > MAX_STICKY_KEY_BYTES:
            raise BadRequest(
                f"the sticky key ({where}) has {size} bytes; the limit is "
                f"{MAX_STICKY_KEY_BYTES} bytes"
            )
    return key


def _cookie(raw: str | None, name: str) -> str | None:
    if raw is None:
        return None
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _parameter(parameters: Mapping[str, Any], name: str) -> str | None:
    value = parameters.get(name)
    if value is None or isinstance(value, str):
        return value
    # gRPC parameters are scalars: a number is its text, as REST reads a field.
    return str(value)
