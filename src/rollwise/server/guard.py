"""What every control API request must satisfy before any route sees it.

A web page can make a browser send requests to the gateway: a ``text/plain`` POST
needs no CORS preflight, and a DNS name that resolves to 127.0.0.1 makes the browser
call a loopback gateway as if it were the page's own site (DNS rebinding). Under
``--insecure-dev`` no token stands in the way, so the control API checks, for every
request under ``/api/v1``:

- ``Host`` (under ``--insecure-dev`` only): a loopback name or address, or the host the
  server was started on; anything else is a rebound name and gets 421. With tokens the
  gateway may sit behind a proxy under any public name, and a browser never attaches a
  bearer token on its own, so the name is not checked there.
- ``Origin`` and ``Sec-Fetch-Site`` on a state-changing method: when a browser says the
  request comes from another origin, 403. Clients that are not browsers send neither.
- a body is JSON (``Content-Type: application/json``, 415 otherwise): the one type a
  page cannot send cross-site without a preflight that rollwise never grants.
- a declared ``Content-Length`` within the control body limit (413); bodies without
  one are counted while they are read (:func:`rollwise.server.params.read_body`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from rollwise.config import DEFAULT_MAX_CONTROL_BODY_BYTES, is_loopback

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTROL_PREFIX = "/api/v1"
CONTROL_MAX_BODY_BYTES = DEFAULT_MAX_CONTROL_BODY_BYTES
"""The largest control API body by default (1 MiB, ``server.max_control_body_bytes``):
specs and routing tables are a few KB, so a larger body is a mistake or an attack."""

JSON_TYPE = "application/json"
STATE_CHANGING = frozenset({"POST", "PUT", "DELETE", "PATCH"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# What a browser says about where a request comes from; anything else is another site.
_SAME_ORIGIN_FETCH = frozenset({"same-origin", "none"})


def control_body_limit(max_control_body_bytes: int, max_body_bytes: int) -> int:
    """The control API's body limit: its own (1 MiB by default), or the data plane's
    limit when that is smaller."""
    return min(max_control_body_bytes, max_body_bytes)


class Refusal(Exception):
    """A request the guard will not pass on: its status and the message to send."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def split_authority(value: str) -> tuple[str, int | None] | None:
    """``host[:port]`` (an IPv6 address in brackets) as a lower-case host and a port;
    ``None`` when it is not one."""
    value = value.strip().lower()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text_or_empty = value.partition(":")
        port_text = port_text_or_empty if sep else None
    if not host:
        return None
    if port_text is None:
        return host.rstrip("."), None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return host.rstrip("."), int(port_text)


def _is_loopback_name(host: str) -> bool:
    # RFC 6761: names under .localhost resolve to loopback in the resolver itself, so
    # no outside DNS answer can point them elsewhere.
    return is_loopback(host) or host.endswith(".localhost")


def check_host(host_header: str | None, allowed_host: str) -> None:
    """Refuse (421) a ``Host`` that is neither loopback nor ``allowed_host``."""
    if host_header is None:
        # Browsers always send Host; a client without one is no web page.
        return
    authority = split_authority(host_header)
    if authority is None:
        raise Refusal(400, f"the Host header {host_header!r} is not a host name and port")
    host, _ = authority
    if _is_loopback_name(host) or host == allowed_host.strip("[]").lower():
        return
    raise Refusal(
        421,
        f"refused Host {host_header!r}: with --insecure-dev the control API answers only "
        "to a loopback name or address (localhost, 127.0.0.1, [::1]); another name "
        "pointing here may be a web page rebinding its DNS to reach this server",
    )


def same_origin(origin: str, host_header: str | None) -> bool:
    """Whether ``origin`` (scheme://host[:port]) names the server this ``Host`` names."""
    scheme, sep, rest = origin.strip().lower().partition("://")
    if not sep or scheme not in _DEFAULT_PORTS or host_header is None:
        return False
    origin_authority = split_authority(rest.rstrip("/"))
    host_authority = split_authority(host_header)
    if origin_authority is None or host_authority is None:
        return False
    default = _DEFAULT_PORTS[scheme]
    origin_host, origin_port = origin_authority
    host, port = host_authority
    return origin_host == host and (origin_port or default) == (port or default)


def check_origin(method: str, headers: dict[str, str | None]) -> None:
    """Refuse (403) a state-changing request a browser says comes from another site."""
    if method not in STATE_CHANGING:
        return
    origin = headers.get("origin")
    if origin is not None and not same_origin(origin, headers.get("host")):
        raise Refusal(
            403,
            f"refused a cross-origin {method}: Origin {origin!r} is not this server "
            f"({headers.get('host')!r}); the control API takes changes only from "
            "the same origin or from clients that are not browsers",
        )
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in _SAME_ORIGIN_FETCH:
        raise Refusal(
            403,
            f"refused a cross-origin {method}: the browser says it comes from a "
            f"{fetch_site} page (Sec-Fetch-Site); the control API takes changes only "
            "from the same origin",
        )


def check_body_headers(headers: dict[str, str | None], limit: int) -> None:
    """Refuse a declared body over ``limit`` (413) and a body that is not JSON (415)."""
    length = headers.get("content-length")
    chunked = headers.get("transfer-encoding") is not None
    if length is not None:
        if not length.strip().isdigit():
            raise Refusal(400, f"the Content-Length {length!r} is not a whole number")
        declared = int(length)
        if declared > limit:
            raise Refusal(
                413,
                f"the request body has {declared} bytes; the control API's limit is {limit} bytes",
            )
        has_body = declared > 0
    else:
        # Without a length the body's size is unknown until it is read: treat it as
        # one, so that its type is checked before a byte of it is.
        has_body = chunked
    if not has_body:
        return
    content_type = headers.get("content-type")
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type != JSON_TYPE:
        shown = repr(content_type) if content_type is not None else "none"
        raise Refusal(
            415,
            f"the control API takes request bodies as Content-Type: {JSON_TYPE}; got {shown}",
        )


class ControlGuard:
    """ASGI middleware: runs the checks above on every ``/api/v1`` request and answers
    a refusal in JSON (``{"error": ...}``) before the route, and its auth, runs."""

    def __init__(self, app: ASGIApp, *, insecure_dev: bool, host: str, max_body_bytes: int) -> None:
        self.app = app
        self.insecure_dev = insecure_dev
        self.host = host
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _is_control(scope["path"]):
            try:
                self.check(scope)
            except Refusal as refusal:
                await _refuse(send, refusal)
                return
        await self.app(scope, receive, send)

    def check(self, scope: Scope) -> None:
        """Raise :class:`Refusal` when the request must not reach the control API."""
        headers = _headers(scope)
        if headers is None:
            raise Refusal(400, "a header that must appear once (Host, Origin, ...) is repeated")
        if self.insecure_dev:
            check_host(headers.get("host"), self.host)
        check_origin(str(scope["method"]).upper(), headers)
        check_body_headers(headers, self.max_body_bytes)


_CHECKED = frozenset(
    {"host", "origin", "sec-fetch-site", "content-type", "content-length", "transfer-encoding"}
)


def _headers(scope: Scope) -> dict[str, str | None] | None:
    """The headers the guard reads, by lower-case name; ``None`` when one is repeated
    (two Hosts or two Origins could mean one thing to the guard and another later)."""
    found: dict[str, str | None] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        if name in _CHECKED:
            if name in found:
                return None
            found[name] = raw_value.decode("latin-1")
    return found


def _is_control(path: str) -> bool:
    return path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")


async def _refuse(send: Send, refusal: Refusal) -> None:
    body = orjson.dumps({"error": refusal.message})
    headers = [
        (b"content-type", JSON_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
