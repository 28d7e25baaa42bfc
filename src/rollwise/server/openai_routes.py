"""The OpenAI-compatible routes of the data plane: ``POST /v1/chat/completions``,
``/v1/completions``, ``/v1/embeddings`` and ``GET /v1/models[/{model}]``.

The body's ``model`` names the rollwise model; routing picks the version (sticky users
by the model's ``sticky_key``, else the body's ``user``), and the ``openai`` backend
sends the request to that version's endpoint with its own model name, system prompt,
defaults and API key. A streamed answer (``stream: true``) is passed on chunk by chunk
as it comes, never held whole, and measured on the way (``rollwise.metrics.llm``); when
the client goes away mid-stream the upstream connection is closed, which cancels the
generation there.

``Authorization`` belongs to the application (OpenAI clients always send one): it is
never refused and never passed on. Forcing a version with ``X-Rollwise-Version`` needs
rollwise's operator token in ``X-Rollwise-Token``. Every answer carries
``X-Rollwise-Version`` (once a version is chosen) and ``X-Request-Id``; refusals are in
OpenAI's error shape, ``{"error": {"message", "type", "param", "code"}}``, so that
OpenAI clients raise their own exception types. An upstream's own 4xx answer is passed
on as it is (it is already in that shape); its 5xx, a timeout or no answer becomes 502,
504 or 503 here and counts against the version.

A client that disconnects before the end of a stream is recorded as a client error of
the version (the answer was cut by the caller, not failed by the version).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from rollwise.backends.exchange import Verdict, answer_fields, judge
from rollwise.backends.llm_request import ROUTES, LlmRequest
from rollwise.backends.openai import MAX_ANSWER_BYTES, OpenAIBackend, llm_response
from rollwise.backends.rest import error_detail
from rollwise.domain import ModelSpec, Role
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
from rollwise.metrics.llm import StreamMeter, answer_usage, prompt_words
from rollwise.runtime.gateway import Gateway
from rollwise.server.auth import Authenticator
from rollwise.server.errors import status_of
from rollwise.server.payloads import BadRequest
from rollwise.server.proxy import Receive, Scope, Send, Sticky

log = logging.getLogger("rollwise.dataplane")

PREFIX = "/v1/"
MAX_USER_BYTES = 256
"""The longest ``user`` field taken as a sticky key (as for any sticky key)."""

VERSION_FAULT_STATUSES: dict[int, str] = {
    401: "the version's API key was refused",
    403: "the version's API key may not use this model",
    404: "the upstream has no such model: check the version's model option",
    407: "a proxy refused the version's credentials",
    429: "the version's quota or rate limit is used up",
}
"""Upstream answers that say nothing about the caller's request: rollwise sends the
upstream its own key and model name, never the application's ``Authorization``, so
these are the version's failures (502), counted against it in gates."""

_JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class _Chosen:
    """What routing decided for one request (filled as far as it got before a refusal)."""

    __slots__ = ("backend", "forced", "head", "model", "param", "table", "version")

    def __init__(self) -> None:
        self.model = ""
        self.version = ""
        self.table: Any = None
        self.backend: OpenAIBackend | None = None
        self.forced: str | None = None
        self.param: str | None = None
        """The request field a refusal is about."""
        self.head: list[tuple[bytes, bytes]] = []


class ModelNotFound(NotFound):
    """The body's ``model`` names no rollwise model with openai versions."""


def error_body(error: RollwiseError, status: int, param: str | None = None) -> bytes:
    """A refusal in OpenAI's error shape."""
    code: str | None = None
    if isinstance(error, ModelNotFound):
        code = "model_not_found"
    elif isinstance(error, BackendTimeout):
        code = "timeout"
    elif isinstance(error, BackendUnavailable):
        code = "unavailable"
    elif isinstance(error, BackendError):
        code = "upstream_error"
    elif isinstance(error, PayloadTooLarge):
        code = "request_too_large"
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps(
        {"error": {"message": str(error), "type": kind, "param": param, "code": code}}
    )


class OpenAIRoutes:
    """Serves ``/v1/...`` for the data plane."""

    def __init__(
        self,
        gateway: Gateway,
        auth: Authenticator,
        *,
        max_body_bytes: int,
        new_id: Callable[[str | None], str],
        sticky: Sticky,
    ) -> None:
        self.gateway = gateway
        self.serving = gateway.serving
        self.auth = auth
        self.max_body = max_body_bytes
        self._new_id = new_id
        self._sticky = sticky

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _header_map(scope)
        raw_id = headers.get(b"x-request-id")
        request_id = self._new_id(None if raw_id is None else raw_id.decode("latin-1"))
        path: str = scope["path"]
        route = path[len(PREFIX) - 1 :].rstrip("/")
        method: str = scope["method"]
        if method == "GET" and (route == "/models" or route.startswith("/models/")):
            await self._models(send, route[len("/models/") :], request_id)
            return
        if route not in ROUTES:
            await _fail(send, NotFound(f"no route {method} {path}"), request_id, [])
            return
        if method != "POST":
            await _fail(send, BadRequest(f"{path} takes POST, not {method}"), request_id, [])
            return
        await self._llm(scope, receive, send, headers, route, request_id)

    # -- GET /v1/models -----------------------------------------------------------------

    def _openai_models(self) -> list[str]:
        models = self.gateway.models
        return sorted(name for name, spec in models.items() if _is_openai(spec))

    async def _models(self, send: Send, one: str, request_id: str) -> None:
        names = self._openai_models()
        extra = [(b"x-request-id", request_id.encode())]
        if one:
            if one not in names:
                await _fail(send, _unknown(one, names), request_id, [], param="model")
                return
            await _reply(send, 200, orjson.dumps(_model_entry(one)), extra)
            return
        listing = {"object": "list", "data": [_model_entry(name) for name in names]}
        await _reply(send, 200, orjson.dumps(listing), extra)

    # -- POST /v1/{chat/completions,completions,embeddings} ------------------------------

    async def _llm(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        route: str,
        request_id: str,
    ) -> None:
        chosen = _Chosen()
        refusal: RollwiseError | None = None
        try:
            body = await _read_body(receive, headers.get(b"content-length"), self.max_body)
            data = _json_object(body)
            self._choose(scope, headers, data, chosen)
        except RollwiseError as error:
            refusal = error
        if refusal is not None:
            await _fail(send, refusal, request_id, chosen.head, param=chosen.param)
            return
        model, version, table, backend = chosen.model, chosen.version, chosen.table, chosen.backend
        forced = chosen.forced
        version_header = chosen.head
        assert backend is not None
        role = Role.SERVED if forced is None else Role.PREVIEW
        request = LlmRequest(route, data, prompt_words(data))
        mirrors = bool(table.mirrors) and forced is None
        answer_head = [*version_header, (b"x-request-id", request_id.encode())]
        started = time.perf_counter()
        failure: RollwiseError | None = None
        try:
            stream = await backend.open(request, streamed=request.stream)
        except RollwiseError as error:
            failure = error
        if failure is not None:
            latency_ms = (time.perf_counter() - started) * 1000.0
            self.serving.exchanged(table, version, role, request_id, latency_ms, 0, failure, None)
            await _fail(send, _worded(failure, model, version), request_id, version_header)
            if mirrors:
                self.serving.mirror(table, request, request_id, None)
            return
        status = stream.status
        verdict = judge(status)
        if verdict is not Verdict.ANSWERED:
            await self._upstream_refused(
                send, stream, table, version, role, request_id, started, answer_head
            )
            if mirrors:
                self.serving.mirror(table, request, request_id, None)
            return
        if request.stream:
            await self._stream(
                receive, send, stream, backend, table, version, role, request, request_id,
                started, answer_head, mirrors,
            )  # fmt: skip
            return
        whole: bytes | None = None
        try:
            whole = await stream.read_all(MAX_ANSWER_BYTES)
        except RollwiseError as error:
            failure = error
        total_ms = (time.perf_counter() - started) * 1000.0
        if whole is None:
            cause = failure or BackendError(
                f"the answer is over {MAX_ANSWER_BYTES} bytes", version=version
            )
            self.serving.exchanged(table, version, role, request_id, total_ms, status, cause, None)
            await _fail(send, _worded(cause, model, version), request_id, version_header)
            if mirrors:
                self.serving.mirror(table, request, request_id, None)
            return
        usage = answer_usage(
            whole, total_ms, request.prompt_words, backend.prices, embeddings=request.embeddings
        )
        outcome = self.serving.exchanged(
            table, version, role, request_id, total_ms, status, None, llm_response(usage)
        )
        head = answer_fields(stream.headers) + answer_head
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": whole})
        if mirrors:
            self.serving.mirror(table, request, request_id, outcome)

    async def _stream(
        self,
        receive: Receive,
        send: Send,
        stream: Any,
        backend: OpenAIBackend,
        table: Any,
        version: str,
        role: Role,
        request: LlmRequest,
        request_id: str,
        started: float,
        answer_head: list[tuple[bytes, bytes]],
        mirrors: bool,
    ) -> None:
        """Pass a streamed answer on as it comes, measuring it; stop the upstream when
        the client goes away."""
        meter = StreamMeter()
        head = answer_fields(stream.headers) + answer_head
        await send({"type": "http.response.start", "status": stream.status, "headers": head})
        # The client's next message after its body is its disconnect: watched meanwhile.
        gone = asyncio.ensure_future(receive())
        failure: RollwiseError | None = None
        left = False
        try:
            while True:
                reading = asyncio.ensure_future(stream.read())
                await asyncio.wait((reading, gone), return_when=asyncio.FIRST_COMPLETED)
                if not reading.done():
                    # The client went away: closing the upstream connection cancels the
                    # generation there.
                    reading.cancel()
                    stream.close()
                    left = True
                    break
                chunk = reading.result()
                if not chunk:
                    break
                meter.feed(chunk, (time.perf_counter() - started) * 1000.0)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except RollwiseError as error:
            failure = error
        except BaseException:
            gone.cancel()
            stream.close()
            raise
        gone.cancel()
        total_ms = (time.perf_counter() - started) * 1000.0
        model = table.model
        if left:
            cut = ValidationError("the client disconnected before the end of the stream")
            self.serving.exchanged(table, version, role, request_id, total_ms, 0, cut, None)
            return
        if failure is not None:
            self.serving.exchanged(
                table, version, role, request_id, total_ms, stream.status, failure, None
            )
            log.warning(
                "model %s version %s: a streamed answer was cut off after its head had gone "
                "to the client, whose connection is closed: %s",
                model,
                version,
                failure,
            )
            if mirrors:
                self.serving.mirror(table, request, request_id, None)
            # Raised to the server, which closes the client's connection before the end
            # of the body: the only way left to tell the client the answer is incomplete.
            raise failure
        usage = meter.usage(total_ms, request.prompt_words, backend.prices)
        outcome = self.serving.exchanged(
            table, version, role, request_id, total_ms, stream.status, None, llm_response(usage)
        )
        await send({"type": "http.response.body", "body": b""})
        if mirrors:
            self.serving.mirror(table, request, request_id, outcome)

    async def _upstream_refused(
        self,
        send: Send,
        stream: Any,
        table: Any,
        version: str,
        role: Role,
        request_id: str,
        started: float,
        answer_head: list[tuple[bytes, bytes]],
    ) -> None:
        """An upstream's 4xx is passed on as it is (the caller's mistake); its 5xx is
        the version's failure, answered 502. So are the 4xx that only the version can
        cause (``VERSION_FAULT_STATUSES``), without the upstream's words, which may
        quote the version's key."""
        status = stream.status
        if status in VERSION_FAULT_STATUSES:
            latency_ms = (time.perf_counter() - started) * 1000.0
            faulted = BackendError(
                f"version {version!r} of model {table.model!r} failed: upstream answered "
                f"HTTP {status} ({VERSION_FAULT_STATUSES[status]})",
                version=version,
            )
            self.serving.exchanged(
                table, version, role, request_id, latency_ms, status, faulted, None
            )
            await _fail(send, faulted, request_id, answer_head[:-1])
            return
        if judge(status) is Verdict.REFUSED:
            failure: RollwiseError | None = None
            body = b""
            try:
                found = await stream.read_all(64 * 1024)
                body = found if found is not None else b""
            except RollwiseError as error:
                failure = error
            latency_ms = (time.perf_counter() - started) * 1000.0
            self.serving.exchanged(
                table, version, role, request_id, latency_ms, status, failure, None
            )
            head = [_JSON, (b"content-length", str(len(body)).encode()), *answer_head]
            await send({"type": "http.response.start", "status": status, "headers": head})
            await send({"type": "http.response.body", "body": body})
            return
        detail = await error_detail(stream)
        latency_ms = (time.perf_counter() - started) * 1000.0
        model = table.model
        failed = BackendError(
            f"version {version!r} of model {model!r} failed: upstream answered HTTP "
            f"{status}: {detail}",
            version=version,
        )
        self.serving.exchanged(table, version, role, request_id, latency_ms, status, failed, None)
        await _fail(send, failed, request_id, answer_head[:-1])

    def _choose(
        self, scope: Scope, headers: dict[bytes, bytes], data: dict[str, Any], chosen: _Chosen
    ) -> None:
        """Fill ``chosen`` with the model, version and backend that answer ``data``."""
        model = data.get("model")
        if not isinstance(model, str) or not model:
            chosen.param = "model"
            raise BadRequest("'model' must name a model: the rollwise model's name")
        if not _is_openai(self.gateway.models.get(model)):
            chosen.param = "model"
            raise _unknown(model, self._openai_models())
        chosen.model = model
        forced_raw = headers.get(b"x-rollwise-version")
        if forced_raw is not None:
            chosen.forced = forced_raw.decode("latin-1")
            self._operator(headers.get(b"x-rollwise-token"))
        key = self._sticky(scope, model, data, headers)
        if key is None:
            key = _user(data)
        table, version = self.serving.choose(model, key, chosen.forced)
        chosen.table, chosen.version = table, version
        chosen.head = [(b"x-rollwise-version", version.encode())]
        backend = self.gateway.backends.get((model, version))
        if not isinstance(backend, OpenAIBackend):
            raise BackendUnavailable(
                f"version {version!r} of model {model!r} is not loaded", version=version
            )
        chosen.backend = backend

    def _operator(self, token: bytes | None) -> None:
        """A forced version needs rollwise's operator token, in ``X-Rollwise-Token``
        (``Authorization`` is the application's)."""
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
                f"(Authorization is the application's and is never read): {error}"
            ) from None


# -- helpers ----------------------------------------------------------------------------------


def _is_openai(spec: ModelSpec | None) -> bool:
    if spec is None:
        return False
    stable = spec.versions.get(spec.stable)
    return stable is not None and stable.backend == "openai"


def _unknown(model: str, names: list[str]) -> ModelNotFound:
    known = ", ".join(names) or "none"
    return ModelNotFound(
        f"The model {model!r} does not exist here (models with openai versions: {known})"
    )


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "rollwise"}


def _user(data: dict[str, Any]) -> str | None:
    """The body's ``user`` as a sticky key (OpenAI's field naming the end user)."""
    user = data.get("user")
    if not isinstance(user, str) or not user:
        return None
    if len(user.encode("utf-8", "surrogatepass")) > MAX_USER_BYTES:
        raise BadRequest(f"'user' has more than {MAX_USER_BYTES} bytes")
    return user


def _header_map(scope: Scope) -> dict[bytes, bytes]:
    headers = scope["headers"]
    found = dict(headers)
    if len(found) != len(headers):
        found = dict(reversed(headers))
    return found


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


async def _read_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
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
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _reply(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    head = [_JSON, (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def _fail(
    send: Send,
    error: RollwiseError,
    request_id: str,
    headers: list[tuple[bytes, bytes]],
    *,
    param: str | None = None,
) -> None:
    status = status_of(error)
    if status >= 500 and not isinstance(error, BackendTimeout | BackendUnavailable):
        log.warning("%s", error)
    extra = [*headers, (b"x-request-id", request_id.encode())]
    await _reply(send, status, error_body(error, status, param), extra)


def _worded(error: RollwiseError, model: str, version: str) -> RollwiseError:
    """A version's failure as the client reads it, naming the model and version."""
    if isinstance(error, BackendTimeout):
        return BackendTimeout(
            f"version {version!r} of model {model!r} did not answer in time: {error}",
            version=version,
        )
    if isinstance(error, BackendUnavailable):
        return error
    if isinstance(error, BackendError):
        return BackendError(
            f"version {version!r} of model {model!r} failed: {error}", version=version
        )
    return error
