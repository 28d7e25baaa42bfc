"""The data plane's hot path as a bare ASGI handler: infer, predict and feedback.

These three routes carry nearly all traffic, so they skip the framework: the path is
matched by hand, the body is read with a size limit and parsed once, and the reply is
written as raw bytes. Everything else goes to the Starlette app behind it.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from rollwise.domain import Role, StickyKind
from rollwise.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    PayloadTooLarge,
    RollwiseError,
    ValidationError,
)
from rollwise.runtime.gateway import Gateway
from rollwise.server.auth import Authenticator
from rollwise.server.errors import error_reply
from rollwise.server.payloads import (
    encode_oip_response,
    encode_plain_response,
    load_json,
    parse_oip_request,
    parse_plain_request,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("rollwise.dataplane")

_JSON = (b"content-type", b"application/json")
_MAX_REQUEST_ID = 128


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if raw is None:
        return None
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"the request body has {int(declared)} bytes; the limit is {limit} bytes"
        )
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ValidationError("the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _reply(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers.append(_JSON)
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class DataPlane:
    """ASGI app: serves infer/predict/feedback itself and hands anything else on."""

    def __init__(self, gateway: Gateway, auth: Authenticator, fallback: ASGIApp) -> None:
        self.gateway = gateway
        self.serving = gateway.serving
        self.auth = auth
        self.fallback = fallback
        self.max_body = gateway.config.server.max_body_bytes
        # Request ids: a random prefix per process and a counter. Unique across replicas
        # and restarts without a system call per request (urandom costs ~10 µs here).
        self._id_prefix = os.urandom(7).hex()
        self._id_counter = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith("/v2/models/") and path.endswith("/infer"):
                name = path[11:-6]
                version: str | None = None
                if "/versions/" in name:
                    name, _, version = name.partition("/versions/")
                if (
                    name
                    and "/" not in name
                    and (version is None or (version and "/" not in version))
                ):
                    await self._predict(scope, receive, send, name, version, oip=True)
                    return
            elif path.startswith("/models/"):
                name, _, action = path[8:].partition("/")
                if name and action == "predict":
                    await self._predict(scope, receive, send, name, None, oip=False)
                    return
                if name and action == "feedback":
                    await self._feedback(scope, receive, send, name)
                    return
        await self.fallback(scope, receive, send)

    def _request_id(self, given: str | None) -> str:
        """The caller's id when it is usable, else a new one."""
        if given and len(given) <= _MAX_REQUEST_ID and given.isprintable():
            return given
        return f"{self._id_prefix}{next(self._id_counter):010x}"

    async def _predict(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        model: str,
        path_version: str | None,
        *,
        oip: bool,
    ) -> None:
        serving = self.serving
        header_id = _header(scope, b"x-request-id")
        # Known before the body is read, so that even a refused request can be traced.
        request_id = self._request_id(header_id)
        version_header: list[tuple[bytes, bytes]] = []
        try:
            body = await _read_body(scope, receive, self.max_body)
            request, data = parse_oip_request(body) if oip else parse_plain_request(body)
            if header_id is None and request.id:
                request_id = self._request_id(request.id)
            forced = path_version or _header(scope, b"x-rollwise-version")
            if forced is not None:
                self.auth.require(_header(scope, b"authorization"), "operator")
            table, version = serving.choose(model, self._sticky(scope, model, data), forced)
            version_header = [(b"x-rollwise-version", version.encode())]
        except RollwiseError as error:
            await self._fail(send, error, request_id, version_header)
            return
        try:
            role = Role.SERVED if forced is None else Role.PREVIEW
            outcome = await serving.serve(table, version, request, request_id, role)
        except RollwiseError as error:
            await self._fail(send, error, request_id, version_header)
            # The shadows still see a request the served version failed: they are judged
            # on the same traffic, with nothing to compare their answer to.
            if table.mirrors and forced is None and isinstance(error, BackendError):
                serving.mirror(table, request, request_id, None)
            return
        encode = encode_oip_response if oip else encode_plain_response
        payload = encode(outcome.response, model, outcome.version, request_id)
        await _reply(
            send,
            200,
            payload,
            [*version_header, (b"x-request-id", request_id.encode())],
        )
        if table.mirrors and forced is None:
            serving.mirror(table, request, request_id, outcome)

    def _sticky(self, scope: Scope, model: str, data: dict[str, Any]) -> str | None:
        sticky = self.gateway.models[model].sticky_key if model in self.gateway.models else None
        if sticky is None:
            return None
        if sticky.kind is StickyKind.HEADER:
            return _header(scope, sticky.name.encode())
        if sticky.kind is StickyKind.COOKIE:
            return _cookie(scope, sticky.name)
        value = data.get(sticky.name)
        if value is None:
            parameters = data.get("parameters")
            if isinstance(parameters, dict):
                value = parameters.get(sticky.name)
        return None if value is None else str(value)

    async def _feedback(self, scope: Scope, receive: Receive, send: Send, model: str) -> None:
        try:
            body = await _read_body(scope, receive, self.max_body)
            data = load_json(body)
            request_id = data.get("request_id")
            if not isinstance(request_id, str) or not request_id:
                raise ValidationError(
                    "'request_id' must be the X-Request-Id of an earlier prediction"
                )
            if "label" not in data:
                raise ValidationError("'label' is missing: send the true answer for that request")
            result = await self.gateway.telemetry.feedback(model, request_id, data["label"])
        except RollwiseError as error:
            await self._fail(send, error, "", [])
            return
        await _reply(send, 200, orjson.dumps(result), [])

    async def _fail(
        self, send: Send, error: RollwiseError, request_id: str, headers: list[tuple[bytes, bytes]]
    ) -> None:
        reply = error_reply(error)
        if reply.status >= 500 and not isinstance(error, BackendTimeout | BackendUnavailable):
            log.warning("%s", error)
        headers = list(headers)
        if request_id:
            headers.append((b"x-request-id", request_id.encode()))
        if reply.wants_token:
            headers.append((b"www-authenticate", b"Bearer"))
        await _reply(send, reply.status, orjson.dumps(reply.body), headers)
