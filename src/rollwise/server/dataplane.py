"""The data plane's hot path as a bare ASGI handler: infer, predict and feedback.

These three routes carry nearly all traffic, so they skip the framework: the path is
matched by hand, the body is read with a size limit and parsed once, and the reply is
written as raw bytes. Everything else goes to the Starlette app behind it.

Feedback (ground truth) decides rollouts, so it is guarded like the control API: a
token with the ``feedback`` or ``operator`` role unless the config says
``feedback: {auth: none}``, request ids no one can guess, labels checked against the
model, and an optional cap per caller.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from rollwise.domain import Role, StickyKind
from rollwise.errors import (
    AuthError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    Forbidden,
    PayloadTooLarge,
    RollwiseError,
    ValidationError,
)
from rollwise.metrics.satisfaction import NO_LABEL, parse_satisfaction
from rollwise.runtime.gateway import Gateway
from rollwise.runtime.telemetry import ModelClasses
from rollwise.server.auth import Authenticator, CallerLimit
from rollwise.server.errors import error_reply
from rollwise.server.guard import Refusal, check_origin
from rollwise.server.openai_routes import OpenAIRoutes
from rollwise.server.payloads import (
    BadRequest,
    encode_oip_response,
    encode_plain_response,
    load_json,
    parse_oip_request,
    parse_plain_request,
)
from rollwise.server.proxy import Proxy

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("rollwise.dataplane")

_JSON = (b"content-type", b"application/json")
_MAX_REQUEST_ID = 128
MAX_STICKY_KEY_BYTES = 256
"""The longest sticky key (header, cookie or field) a request may carry; longer ones
are refused with 400 rather than hashed, so a client learns its key is unusable."""


class RequestIds:
    """Request ids no one can guess: 128 bits, unpredictable without a per-process key.

    Ground truth is posted by request id, so an id that can be guessed lets anyone
    label another user's request. Each id is a counter run through BLAKE2b keyed with
    32 random bytes drawn once per process: a keyed BLAKE2b is a pseudo-random function,
    so without the key the 128-bit ids look independent and uniform (far beyond the
    122 bits of a uuid4), and the counter makes them distinct. It costs ~0.65 µs an id
    here, against ~0.8 µs for ``secrets.token_hex(16)`` and 3.4 µs for ``uuid4()``, and
    makes no system call per request (``os.urandom`` has cost ~10 µs on some hosts).
    One call gives four ids: its 512-bit output, cut in four, is four independent
    128-bit values just as well (each is a different part of one pseudo-random
    output), for a quarter of the hashing.
    A forked worker draws a key of its own, so two workers never share a sequence.
    """

    def __init__(self) -> None:
        self._rekey()

    def _rekey(self) -> None:
        self._hash = hashlib.blake2b(key=os.urandom(32), digest_size=64)
        self._counter = itertools.count()
        self._ready: list[str] = []

    def new(self) -> str:
        ready = self._ready
        if not ready:
            digest = self._hash.copy()
            digest.update(next(self._counter).to_bytes(8, "little"))
            text = digest.hexdigest()
            ready.extend((text[96:], text[64:96], text[32:64], text[:32]))
        return ready.pop()


REQUEST_IDS = RequestIds()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=REQUEST_IDS._rekey)


def _header(scope: Scope, name: bytes) -> str | None:
    value = _header_bytes(scope, name)
    return None if value is None else value.decode("latin-1")


def _header_bytes(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _header_map(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by name, the first of a repeated name winning as in
    ``_header``: one pass in C instead of a loop per header read."""
    headers = scope["headers"]
    found = dict(headers)
    if len(found) != len(headers):
        found = dict(reversed(headers))
    return found


def _traceparent(headers: dict[bytes, bytes]) -> str | None:
    """The caller's W3C ``traceparent``, when it sent a plausible one (the tracer
    parses it; a malformed one starts a new trace)."""
    raw = headers.get(b"traceparent")
    if raw is None or len(raw) > 128:
        return None
    return raw.decode("latin-1")


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if raw is None:
        return None
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


async def _read_body(
    scope: Scope, receive: Receive, limit: int, declared: bytes | None = None
) -> bytes:
    """The whole body, refused beyond ``limit`` bytes; ``declared``: the Content-Length
    header when the caller has it at hand."""
    if declared is None:
        declared = _header_bytes(scope, b"content-length")
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
        self._new_id = REQUEST_IDS.new
        feedback = gateway.config.feedback
        self.feedback_needs_token = feedback.auth == "token"
        self.feedback_limit = (
            CallerLimit(feedback.max_per_minute) if feedback.max_per_minute is not None else None
        )
        self.classes = ModelClasses(lambda: gateway.backends, lambda: gateway.config.labels)
        self.proxy = Proxy(
            gateway,
            auth,
            max_body_bytes=self.max_body,
            new_id=self._request_id,
            sticky=self._sticky,
            fail=self._fail,
        )
        self.openai = OpenAIRoutes(
            gateway,
            auth,
            max_body_bytes=self.max_body,
            new_id=self._request_id,
            sticky=self._sticky,
        )

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
        if scope["type"] == "http" and scope["path"].startswith("/proxy/"):
            await self.proxy(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            await self.openai(scope, receive, send)
            return
        await self.fallback(scope, receive, send)

    def _request_id(self, given: str | None) -> str:
        """The caller's id when it is usable, else a new one."""
        if given and len(given) <= _MAX_REQUEST_ID and given.isprintable():
            return given
        return self._new_id()

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
        headers = _header_map(scope)
        raw_id = headers.get(b"x-request-id")
        header_id = None if raw_id is None else raw_id.decode("latin-1")
        # Known before the body is read, so that even a refused request can be traced.
        request_id = self._request_id(header_id)
        version_header: list[tuple[bytes, bytes]] = []
        # Refusals are answered after each try, never inside its handler (see
        # rollwise.compilation on awaiting in except blocks).
        refusal: RollwiseError | None = None
        try:
            body = await _read_body(scope, receive, self.max_body, headers.get(b"content-length"))
            request, data = parse_oip_request(body) if oip else parse_plain_request(body)
            if header_id is None and request.id:
                request_id = self._request_id(request.id)
            forced = path_version
            if forced is None:
                raw_version = headers.get(b"x-rollwise-version")
                if raw_version is not None:
                    forced = raw_version.decode("latin-1")
            if forced is not None:
                self.auth.require(_header(scope, b"authorization"), "operator")
            key = self._sticky(scope, model, data, headers)
            table, version = serving.choose(model, key, forced)
            version_header = [(b"x-rollwise-version", version.encode())]
        except RollwiseError as error:
            refusal = error
        if refusal is not None:
            await self._fail(send, refusal, request_id, version_header)
            return
        try:
            role = Role.SERVED if forced is None else Role.PREVIEW
            # The caller's trace is only looked up when requests are traced.
            parent = _traceparent(headers) if serving.tracer is not None else None
            outcome = await serving.serve(table, version, request, request_id, role, parent)
        except RollwiseError as error:
            refusal = error
        if refusal is not None:
            await self._fail(send, refusal, request_id, version_header)
            # The shadows still see a request the served version failed or refused: they
            # are judged on the same traffic, with nothing to compare their answer to.
            if (
                table.mirrors
                and forced is None
                and isinstance(refusal, BackendError | ValidationError)
            ):
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

    def _sticky(
        self,
        scope: Scope,
        model: str,
        data: dict[str, Any],
        headers: dict[bytes, bytes] | None = None,
    ) -> str | None:
        """The request's sticky key, at most ``MAX_STICKY_KEY_BYTES`` long (else 400);
        ``headers``: the request's ``_header_map`` when the caller has made it."""
        found = self.gateway.models.get(model)
        sticky = None if found is None else found.sticky_key
        if sticky is None:
            return None
        key: str | None
        if sticky.kind is StickyKind.HEADER:
            # Header values are decoded as latin-1: one character per byte.
            if headers is None:
                headers = _header_map(scope)
            raw = headers.get(sticky.name.encode())
            key = None if raw is None else raw.decode("latin-1")
            where = f"header {sticky.name}"
        elif sticky.kind is StickyKind.COOKIE:
            key = _cookie(scope, sticky.name)
            where = f"cookie {sticky.name}"
        else:
            key = self._sticky_field(data, sticky.name)
            where = f"field {sticky.name!r}"
        # Characters first: only a key that might be too long is encoded to count bytes.
        if key is not None and len(key) > MAX_STICKY_KEY_BYTES // 4:
            size = len(key.encode("utf-8", "surrogatepass"))
            if size > MAX_STICKY_KEY_BYTES:
                raise BadRequest(
                    f"the sticky key ({where}) has {size} bytes; the limit is "
                    f"{MAX_STICKY_KEY_BYTES} bytes"
                )
        return key

    @staticmethod
    def _sticky_field(data: dict[str, Any], name: str) -> str | None:
        value = data.get(name)
        if value is None:
            parameters = data.get("parameters")
            if isinstance(parameters, dict):
                value = parameters.get(name)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int | float):
            return str(value)
        # Not str() of a container: a value nested 1,000 deep would exhaust the stack.
        raise BadRequest(f"the sticky key (field {name!r}) must be a string or a number")

    async def _feedback(self, scope: Scope, receive: Receive, send: Send, model: str) -> None:
        refusal: RollwiseError | None = None
        try:
            if not self.feedback_needs_token or self.auth.insecure_dev:
                # Without a token to show, a label could come from any web page the
                # browser of someone on this network opens: refuse cross-site posts.
                _check_same_site(scope)
            caller = self._feedback_caller(scope)
            limit = self.feedback_limit
            if limit is not None and not limit.allow(caller):
                await self._too_many(send, caller, limit)
                return
            body = await _read_body(scope, receive, self.max_body)
            data = _load_feedback(body)
            request_id = data.get("request_id")
            if (
                not isinstance(request_id, str)
                or not request_id
                or len(request_id) > _MAX_REQUEST_ID
            ):
                raise ValidationError(
                    "'request_id' must be the X-Request-Id of an earlier prediction"
                )
            if "label" not in data and "satisfaction" not in data:
                raise ValidationError(
                    "'label' is missing: send the true answer for that request, or a "
                    "'satisfaction' (true/false or a number in [0, 1])"
                )
            satisfaction: float | None = None
            if "satisfaction" in data:
                satisfaction = parse_satisfaction(data["satisfaction"])
            result = await self.gateway.telemetry.feedback(
                model,
                request_id,
                data.get("label", NO_LABEL),
                self.classes.of(model),
                satisfaction,
            )
        except RollwiseError as error:
            refusal = error
        except RecursionError:
            # Belt and braces: checks never recurse into a label, but a refusal must
            # stay a 422 whatever a label's depth.
            refusal = ValidationError("'label' is nested too deeply")
        if refusal is not None:
            await self._fail(send, refusal, "", [])
            return
        await _reply(send, 200, orjson.dumps(result), [])

    def _feedback_caller(self, scope: Scope) -> str:
        """Who posts this label (for the cap): a token name, or the client's address.

        With ``feedback: {auth: none}`` no token is needed, but one that is sent and
        valid still names the caller; otherwise a token with the feedback (or operator)
        role is required: 401 without one, 403 for a viewer's.
        """
        authorization = _header(scope, b"authorization")
        if self.feedback_needs_token:
            return self.auth.require(authorization, "feedback").name
        if authorization is not None:
            try:
                principal = self.auth.identify(authorization)
            except AuthError:
                principal = None
            if principal is not None:
                return principal.name
        client = scope.get("client")
        return f"address {client[0]}" if client else "address unknown"

    async def _too_many(self, send: Send, caller: str, limit: CallerLimit) -> None:
        wait_s = max(1, math.ceil(limit.retry_after_s(caller)))
        body = {
            "error": f"over the cap of {limit.per_minute} labels per minute for {caller!r}; "
            f"retry in {wait_s} s"
        }
        await _reply(send, 429, orjson.dumps(body), [(b"retry-after", str(wait_s).encode())])

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


def _load_feedback(body: bytes) -> dict[str, Any]:
    """The feedback body as a JSON object.

    ``NaN`` and ``Infinity`` are not JSON, but Python's ``json.dumps`` writes them for a
    float label that is not finite: such a body is read anyway, so that the caller
    learns what is wrong with the label (422: not finite), not just "invalid JSON".
    """
    try:
        return load_json(body)
    except BadRequest as refusal:
        try:
            # Strict UTF-8 first: json.loads would let lone surrogates through, which
            # no store can hold.
            data = json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError):
            raise refusal from None
        if not isinstance(data, dict):
            raise refusal from None
        return data


def _check_same_site(scope: Scope) -> None:
    headers = {
        "origin": _header(scope, b"origin"),
        "host": _header(scope, b"host"),
        "sec-fetch-site": _header(scope, b"sec-fetch-site"),
    }
    try:
        check_origin("POST", headers)
    except Refusal as refusal:
        raise Forbidden(
            refusal.message.replace("the control API takes changes", "ground truth is taken")
        ) from None
