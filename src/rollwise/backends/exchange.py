"""What a ``rest`` version is asked and answers: an application's own HTTP request, passed
through, and the rules for what of it crosses the gateway.

Pure values and functions, no I/O:

- ``ProxyRequest``: a request as the shadows get it again (method, target, header fields
  and the whole body);
- ``request_fields`` / ``answer_fields``: which header fields go on. Hop-by-hop fields
  (RFC 9110 section 7.6.1: ``Connection`` and every field it names, ``Keep-Alive``,
  ``Proxy-Connection``, ``TE``, ``Transfer-Encoding``, ``Upgrade``, ``Trailer``, and the
  proxy's own ``Proxy-Authorization``/``Proxy-Authenticate``) end at the gateway, which
  frames each message itself; so do ``Host`` (the upstream gets its own), ``Expect``
  (answered by the gateway) and rollwise's own ``X-Rollwise-*`` fields, which carry its
  token and must never reach an upstream. Every other field, ``Authorization`` and
  cookies included, goes on unchanged and in order. A request gains ``Via`` and the
  ``X-Forwarded-For``/``-Host``/``-Proto`` fields, and ``X-Request-Id`` when the client
  sent none; an answer loses the upstream's ``X-Request-Id`` and ``X-Rollwise-Version``,
  which the gateway sets;
- ``judge``: what an answer's status says about the version (a 5xx is its failure, a 4xx
  the caller's mistake).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = [
    "ProxyRequest",
    "Verdict",
    "answer_fields",
    "join_fields",
    "judge",
    "request_fields",
]

Field = tuple[bytes, bytes]

_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"trailer",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)
_REQUEST_ONLY_HERE = frozenset({b"host", b"content-length", b"expect"})
"""Request fields the gateway answers or sets itself: the pool sends the upstream's Host
and the framing, and a ``100 Continue`` was the gateway's to give."""
_SET_BY_GATEWAY = frozenset({b"x-request-id", b"x-rollwise-version"})
_ROLLWISE_PREFIX = b"x-rollwise-"
_VIA = b"1.1 rollwise"


class Verdict(Enum):
    """What an upstream's answer says about the version that gave it."""

    ANSWERED = "answered"
    """1xx to 3xx: an answer, the version did its job."""
    REFUSED = "refused"
    """4xx: the caller's request was refused; a client error, never the version's."""
    FAILED = "failed"
    """5xx (or a status outside HTTP's range): the version failed."""


def judge(status: int) -> Verdict:
    if 400 <= status < 500:
        return Verdict.REFUSED
    if 100 <= status < 400:
        return Verdict.ANSWERED
    return Verdict.FAILED


@dataclass(frozen=True, slots=True)
class ProxyRequest:
    """One request to pass through, whole: what a shadow version is sent again."""

    method: str
    target: str
    """The path below the version's URL, with the query: ``/predict?debug=1``."""
    fields: tuple[Field, ...]
    """The header fields to send (``request_fields``), lower-case names."""
    body: bytes
    task: str = "classification"
    """The model's task: how a prediction read out of the answer is compared."""
    max_answer_bytes: int = 4 * 1024 * 1024
    """The most of an answer's body the gateway reads to find the prediction in it."""

    def __reduce__(self) -> tuple[Any, ...]:
        # A compiled frozen dataclass cannot be unpickled field by field.
        return (
            ProxyRequest,
            (self.method, self.target, self.fields, self.body, self.task, self.max_answer_bytes),
        )


def _connection_tokens(fields: Sequence[Field]) -> frozenset[bytes]:
    """The field names a ``Connection`` field lists: hop-by-hop too (RFC 9110 7.6.1)."""
    named: set[bytes] = set()
    for name, value in fields:
        if name.lower() == b"connection":
            named.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(named)


def request_fields(
    fields: Sequence[Field],
    *,
    request_id: str,
    client: str | None,
    scheme: str,
) -> tuple[Field, ...]:
    """The request's header fields as the upstream gets them (see the module's doc).

    ``fields`` are the request's, with lower-case names as ASGI servers give them;
    ``client`` the address it came from, ``scheme`` its ``http`` or ``https``.
    """
    connection = _connection_tokens(fields)
    kept: list[Field] = []
    forwarded_for: bytes | None = None
    host: bytes | None = None
    has_id = has_proto = has_host = False
    for name, value in fields:
        if name in _HOP_BY_HOP or name in _REQUEST_ONLY_HERE or name in connection:
            if name == b"host":
                host = value
            continue
        if name.startswith(_ROLLWISE_PREFIX):
            continue
        if name == b"x-forwarded-for":
            # Folded into one field below, with the client's address appended.
            forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
            continue
        if name == b"x-request-id":
            has_id = True
        elif name == b"x-forwarded-proto":
            has_proto = True
        elif name == b"x-forwarded-host":
            has_host = True
        kept.append((name, value))
    # A field of its own: several Via fields read as one list (RFC 9110 5.3).
    kept.append((b"via", _VIA))
    if client:
        address = client.encode("latin-1")
        forwarded_for = address if forwarded_for is None else forwarded_for + b", " + address
    if forwarded_for is not None:
        kept.append((b"x-forwarded-for", forwarded_for))
    if host is not None and not has_host:
        kept.append((b"x-forwarded-host", host))
    if not has_proto:
        kept.append((b"x-forwarded-proto", scheme.encode("latin-1")))
    if not has_id:
        kept.append((b"x-request-id", request_id.encode("latin-1")))
    return tuple(kept)


def join_fields(fields: Sequence[Field], drop: frozenset[bytes] = frozenset()) -> bytes:
    """``fields`` as header lines for a request head, leaving out the names in ``drop``
    (lower-case). ``ValueError`` when a name or value would break the head."""
    lines = [
        b"%b: %b\r\n" % (name, value) for name, value in fields if not drop or name not in drop
    ]
    block = b"".join(lines)
    # One count over the block, not a search per field: a line break inside a name or a
    # value would smuggle in a field (or a request) of its own. ASGI servers never pass
    # one, but fields may also come from a config or an API.
    if block.count(b"\n") != len(lines) or block.count(b"\r") != len(lines):
        raise ValueError("a header field holds a line break")
    return block


def answer_fields(fields: Sequence[Field]) -> list[Field]:
    """The upstream's answer fields as the client gets them (see the module's doc)."""
    connection = _connection_tokens(fields)
    kept: list[Field] = []
    for name, value in fields:
        lowered = name.lower()
        if lowered in _HOP_BY_HOP or lowered in _SET_BY_GATEWAY or lowered in connection:
            continue
        kept.append((name, value))
    return kept
