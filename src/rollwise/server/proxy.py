"""The pass-through route: ``ANY /proxy/{model}/{path}`` to the routed ``rest`` version.

The request goes to the version's URL + ``path`` with its method, query, body and the
application's header fields unchanged (``rollwise.backends.exchange`` says which fields
end here), and the version's answer comes back with its status, fields and body
unchanged, plus ``X-Rollwise-Version`` and ``X-Request-Id``. ``Authorization`` is the
application's: rollwise's own token, where one is needed (a forced version), is read from
``X-Rollwise-Token`` and never passed on.

Bodies stream both ways. The request's body is read whole first only when the gateway
needs it (a sticky key in a JSON field, or a shadow to send it to again), never beyond
``server.max_body_bytes`` (413); otherwise it is passed on as it arrives, and counted
against the same limit. An answer is held until ``STREAM_AFTER_BYTES`` have come: a
shorter one (most) leaves in one write, and a version that fails before its end gets a
clean 502; a longer one is passed on as it arrives. When the version has an
``output_path`` its answer is read whole to find the prediction in it, up to
``server.max_body_bytes``; a longer answer is passed on all the same, without one.

What came of each request is recorded as for any version (``Serving.exchanged``): an
answer's 5xx, a timeout or a connection lost is the version's failure, a 4xx the caller's
(a client error of the version). An answer that fails after its head has gone out cannot
be turned into an error any more: the client's connection is closed before the end of
the body, so the client sees it cut short, never a truncated body that looks whole.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import orjson

from rollwise.backends.exchange import ProxyRequest, Verdict, answer_fields, judge, request_fields
from rollwise.backends.rest import RestBackend
from rollwise.domain import ModelSpec, Role, StickyKind
from rollwise.errors import (
    AuthError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RollwiseError,
    ValidationError,
)
from rollwise.runtime.gateway import Gateway
from rollwise.server.auth import Authenticator
from rollwise.server.payloads import BadRequest

Scope = Any
Message = Any
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Sticky = Callable[[Scope, str, dict[str, Any], dict[bytes, bytes]], str | None]
"""The data plane's sticky key reader: (scope, model, JSON fields, header map) -> key."""
Fail = Callable[[Send, RollwiseError, str, list[tuple[bytes, bytes]]], Awaitable[None]]
"""The data plane's refusal: (send, error, request id, extra header fields)."""

log = logging.getLogger("rollwise.dataplane")

PREFIX = "/proxy/"
STREAM_AFTER_BYTES = 64 * 1024
"""An answer longer than this is passed on as it arrives; a shorter one is held and sent
in one write."""
_TARGET = re.compile(rb"[\x21-\x7e]*\Z")
_NOT_PASSED = frozenset({"CONNECT", "TRACE"})


class _BodyRest:
    """The rest of a request's body as the client sends it, refused past ``limit``
    bytes in all (``size`` of them already read)."""

    __slots__ = ("done", "limit", "receive", "size")

    def __init__(self, receive: Receive, size: int, limit: int) -> None:
        self.receive = receive
        self.size = size
        self.limit = limit
        self.done = False

    def __aiter__(self) -> _BodyRest:
        return self

    async def __anext__(self) -> bytes:
        while not self.done:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ValidationError("the client disconnected before sending the whole body")
            self.done = not message.get("more_body", False)
            chunk: bytes = message.get("body", b"")
            if chunk:
                self.size += len(chunk)
                if self.size > self.limit:
                    raise PayloadTooLarge(
                        f"the request body exceeds the limit of {self.limit} bytes"
                    )
                return chunk
        raise StopAsyncIteration


class Proxy:
    """Serves ``/proxy/{model}/{path}`` for the data plane."""

    def __init__(
        self,
        gateway: Gateway,
        auth: Authenticator,
        *,
        max_body_bytes: int,
        new_id: Callable[[str | None], str],
        sticky: Sticky,
        fail: Fail,
    ) -> None:
        self.gateway = gateway
        self.serving = gateway.serving
        self.auth = auth
        self.max_body = max_body_bytes
        self._new_id = new_id
        self._sticky = sticky
        self._fail = fail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        name, slash, below = raw[len(PREFIX) :].partition(b"/")
        model = unquote(name.decode("latin-1"))
        path = b"/" + below if slash else b""
        headers = _header_map(scope)
        raw_id = headers.get(b"x-request-id")
        request_id = self._new_id(None if raw_id is None else raw_id.decode("latin-1"))
        version_header: list[tuple[bytes, bytes]] = []
        refusal: RollwiseError | None = None
        complete = True
        body = b""
        declared: int | None = None
        try:
            spec = self._rest_model(model)
            method: str = scope["method"]
            if method in _NOT_PASSED:
                raise ValidationError(f"{method} requests are not passed through")
            target = _target(path, scope.get("query_string", b""))
            forced_raw = headers.get(b"x-rollwise-version")
            forced = None if forced_raw is None else forced_raw.decode("latin-1")
            if forced is not None:
                self._operator(headers.get(b"x-rollwise-token"))
            declared = _declared(headers.get(b"content-length"), self.max_body)
            current = self.gateway.tables.get(model)
            mirrors = current is not None and bool(current.mirrors) and forced is None
            sticky = spec.sticky_key
            by_field = sticky is not None and sticky.kind is StickyKind.FIELD
            body, complete = await self._body_start(receive, whole=mirrors or by_field)
            data = _json_object(body) if by_field and complete else {}
            key = self._sticky(scope, model, data, headers)
            table, version = self.serving.choose(model, key, forced)
            version_header = [(b"x-rollwise-version", version.encode())]
            backend = self._backend(model, version)
        except RollwiseError as error:
            refusal = error
        if refusal is not None:
            await self._fail(send, refusal, request_id, version_header)
            return
        role = Role.SERVED if forced is None else Role.PREVIEW
        proxied = ProxyRequest(
            method,
            target,
            request_fields(
                scope["headers"],
                request_id=request_id,
                client=_client(scope),
                scheme=scope.get("scheme", "http"),
            ),
            body,
            spec.task,
            self.max_body,
        )
        rest = None if complete else _BodyRest(receive, len(body), self.max_body)
        started = time.perf_counter()
        failure: RollwiseError | None = None
        try:
            stream = await backend.open(proxied, rest, declared)
        except RollwiseError as error:
            failure = error
        latency_ms = (time.perf_counter() - started) * 1000.0
        if failure is not None:
            self.serving.exchanged(table, version, role, request_id, latency_ms, 0, failure, None)
            await self._fail(send, _worded(failure, model, version), request_id, version_header)
            if mirrors and isinstance(failure, BackendError):
                # As for inference: the shadows see a request the served version failed.
                self.serving.mirror(table, proxied, request_id, None)
            return
        status = stream.status
        verdict = judge(status)
        read_whole = (
            backend.output_path is not None
            and verdict is Verdict.ANSWERED
            and method != "HEAD"
            and status not in (204, 304)
        )
        hold = self.max_body if read_whole else STREAM_AFTER_BYTES
        parts: list[bytes] = []
        held = 0
        ended = False
        try:
            while held <= hold:
                chunk = await stream.read()
                if not chunk:
                    ended = True
                    break
                parts.append(chunk)
                held += len(chunk)
        except RollwiseError as error:
            failure = error
        if failure is not None:
            # Nothing has gone to the client yet: the failure can still be an answer.
            self.serving.exchanged(
                table, version, role, request_id, latency_ms, status, failure, None
            )
            await self._fail(send, _worded(failure, model, version), request_id, version_header)
            if mirrors:
                self.serving.mirror(table, proxied, request_id, None)
            return
        head = answer_fields(stream.headers)
        head += version_header
        head.append((b"x-request-id", request_id.encode()))
        held_body = parts[0] if len(parts) == 1 else b"".join(parts)
        if ended:
            response = (
                backend.answer(stream, held_body, spec.task, self.max_body) if read_whole else None
            )
            outcome = self.serving.exchanged(
                table, version, role, request_id, latency_ms, status, None, response
            )
            await send({"type": "http.response.start", "status": status, "headers": head})
            await send({"type": "http.response.body", "body": held_body})
            if mirrors:
                self.serving.mirror(table, proxied, request_id, outcome)
            return
        if read_whole:
            backend.unreadable(f"the answer is over {self.max_body} bytes")
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": held_body, "more_body": True})
        try:
            while True:
                chunk = await stream.read()
                if not chunk:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except RollwiseError as error:
            failure = error
        except BaseException:
            # The client went away (or the task was cancelled): let the upstream go too.
            stream.close()
            raise
        outcome = self.serving.exchanged(
            table, version, role, request_id, latency_ms, status, failure, None
        )
        if mirrors:
            self.serving.mirror(table, proxied, request_id, outcome)
        if failure is not None:
            log.warning(
                "model %s version %s: the answer to %s %s was cut off after its head had "
                "gone to the client, whose connection is closed: %s",
                model,
                version,
                method,
                target,
                failure,
            )
            # Raised to the server, which closes the client's connection before the end
            # of the body: the only way left to tell the client the answer is incomplete.
            raise failure
        await send({"type": "http.response.body", "body": b""})

    # -- the request --------------------------------------------------------------------

    def _rest_model(self, model: str) -> ModelSpec:
        if not model:
            raise NotFound("name the model: /proxy/MODEL/PATH")
        spec = self.gateway.models.get(model)
        if spec is None:
            known = ", ".join(sorted(self.gateway.models)) or "none"
            raise NotFound(f"unknown model {model!r} (models: {known})")
        stable = spec.versions.get(spec.stable)
        if stable is None or stable.backend != "rest":
            raise NotFound(
                f"model {model!r} has no rest versions: /proxy/ passes requests through to "
                f"rest versions only; send its inference requests to "
                f"POST /v2/models/{model}/infer or POST /models/{model}/predict"
            )
        return spec

    def _backend(self, model: str, version: str) -> RestBackend:
        backend = self.gateway.backends.get((model, version))
        if not isinstance(backend, RestBackend):
            raise BackendUnavailable(
                f"version {version!r} of model {model!r} is not loaded", version=version
            )
        return backend

    def _operator(self, token: bytes | None) -> None:
        """A forced version needs rollwise's operator token, in ``X-Rollwise-Token``
        (``Authorization`` belongs to the application and is passed on)."""
        authorization = None
        if token is not None:
            text = token.decode("latin-1").strip()
            authorization = text if text[:7].lower() == "bearer " else f"Bearer {text}"
        try:
            self.auth.require(authorization, "operator")
        except Forbidden:
            raise
        except AuthError as error:
            raise AuthError(
                f"X-Rollwise-Version needs rollwise's operator token in X-Rollwise-Token "
                f"(Authorization is the application's and is passed on): {error}"
            ) from None

    async def _body_start(self, receive: Receive, *, whole: bool) -> tuple[bytes, bool]:
        """The body as far as it has come (all of it when ``whole``), and whether that
        is all of it."""
        limit = self.max_body
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ValidationError("the client disconnected before sending the whole body")
            chunk: bytes = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
            more = bool(message.get("more_body", False))
            if not more or not whole:
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                return body, not more


def _header_map(scope: Scope) -> dict[bytes, bytes]:
    """The request's fields by name, the first of a repeated name winning."""
    headers = scope["headers"]
    found = dict(headers)
    if len(found) != len(headers):
        found = dict(reversed(headers))
    return found


def _target(path: bytes, query: bytes) -> str:
    """The request target below the version's URL, as the client encoded it."""
    if not _TARGET.match(path) or not _TARGET.match(query):
        raise BadRequest(
            "the request path and query must be ASCII without spaces: percent-encode "
            "other characters"
        )
    target = path.decode("ascii")
    return f"{target}?{query.decode('ascii')}" if query else target


def _declared(value: bytes | None, limit: int) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise BadRequest(f"Content-Length must be a number of bytes, got {value!r}")
    size = int(value)
    if size > limit:
        raise PayloadTooLarge(f"the request body has {size} bytes; the limit is {limit} bytes")
    return size


def _json_object(body: bytes) -> dict[str, Any]:
    """The body's fields when it is a JSON object (for a sticky key), else none: the
    service decides what its requests may be, not the gateway."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _worded(error: RollwiseError, model: str, version: str) -> RollwiseError:
    """A version's failure as the client reads it, naming the model and version."""
    if isinstance(error, BackendTimeout):
        return BackendTimeout(
            f"version {version!r} of model {model!r} did not answer in time: {error}",
            version=version,
        )
    if isinstance(error, BackendError):
        return BackendError(
            f"version {version!r} of model {model!r} failed: {error}", version=version
        )
    return error
