"""The ``openai`` backend: a version is an OpenAI-compatible endpoint (vLLM, TGI,
llama.cpp server, Ollama, a hosted API).

Clients call the gateway's ``/v1/chat/completions``, ``/v1/completions`` and
``/v1/embeddings`` (``rollwise.server.openai_routes``) with the rollwise model's name in
the body's ``model``; the routed version's request goes to its ``url`` with ``model``
replaced by the version's own, its ``system_prompt`` put first among the messages and
its default ``parameters`` filled in where the client set none (so a prompt or a
temperature can be a version too). Answers stream back as they come.

Options: ``url`` (required: the base URL including ``/v1``, as OpenAI clients take it),
``model`` (required: the name sent upstream), ``api_key_env`` (the environment variable
holding the version's API key, sent as ``Authorization: Bearer``; read when the version
loads, never logged), ``timeout_s`` (for the head of the answer and each piece of it;
default 60), ``system_prompt``, ``parameters`` (defaults such as ``temperature`` or
``max_tokens``), ``price_per_1k_prompt`` / ``price_per_1k_completion`` (for the
``cost_per_request`` metric) and the pool's ``max_connections`` (default 64),
``max_connecting``, ``min_idle``, ``idle_timeout_s``.

A model's versions are all ``openai`` or none (``check_model_backends``). Shadows get
the request whole and not streamed (``predict``); their answer's text is the first
output of the ``InferenceResponse`` and its measures are in ``parameters["llm"]``.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from rollwise.backends.base import InferenceRequest, InferenceResponse, ModelMetadata, Tensor
from rollwise.backends.exchange import Verdict, judge
from rollwise.backends.llm_request import ROUTES, LlmRequest
from rollwise.backends.options import check_options, http_pool_limits
from rollwise.backends.rest import error_detail, parse_base_url
from rollwise.backends.upstream_conn import connect_error
from rollwise.backends.upstream_stream import BodyStream, StreamingPool
from rollwise.errors import BackendError, BackendLoadError, ConfigError, RequestRejected
from rollwise.metrics.llm import LlmUsage, Prices, answer_usage

__all__ = ["DEFAULT_TIMEOUT_S", "ROUTES", "LlmRequest", "OpenAIBackend"]

DEFAULT_TIMEOUT_S = 60.0
"""An LLM may think a while before its first token."""
MAX_ANSWER_BYTES = 8 * 1024 * 1024
"""The most of a whole (non-streamed) answer read for a shadow."""
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELDS = b"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"


class OpenAIBackend:
    """One version that is an OpenAI-compatible endpoint, reached through a keep-alive
    pool."""

    kind: str = "openai"
    artifact_sha256: str = ""

    def __init__(self, name: str, options: Mapping[str, Any], base_dir: Path) -> None:
        self.name = name
        where = f"versions.{name}"
        check_options(self.kind, {k: v for k, v in options.items() if k != "backend"}, where)
        self.url, self._origin, self.prefix = parse_base_url(
            options.get("url"),
            f"{where}.url",
            example="http://host:port/v1 or https://host/v1",
            credentials="put the key in the environment variable named by api_key_env",
        )
        self.model = str(options["model"])
        env = options.get("api_key_env")
        if env is not None and not _ENV_NAME.fullmatch(env):
            raise ConfigError(
                f"{where}.api_key_env: must name an environment variable (letters, digits "
                f"and _), got {env!r}"
            )
        self.api_key_env: str | None = env
        self.timeout_s = float(options.get("timeout_s", DEFAULT_TIMEOUT_S))
        self.limits = http_pool_limits(options, where)
        prompt = options.get("system_prompt")
        self.system_prompt: str | None = prompt
        parameters = dict(options.get("parameters") or {})
        for reserved in ("model", "messages", "prompt", "input", "stream"):
            if reserved in parameters:
                raise ConfigError(
                    f"{where}.parameters.{reserved}: set by the request, not by a version's "
                    "defaults"
                )
        self.parameters = parameters
        self.prices = Prices(
            float(options.get("price_per_1k_prompt", 0.0)),
            float(options.get("price_per_1k_completion", 0.0)),
        )
        self._pool: StreamingPool | None = None
        self._ready = False
        self._metadata = ModelMetadata(
            platform="openai", extra={"upstream": self.url, "model": self.model}
        )

    # -- the Backend contract ------------------------------------------------------------

    async def load(self) -> None:
        await self.close()
        headers: dict[str, str] = {}
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise BackendLoadError(
                    f"version {self.name}: the environment variable {self.api_key_env} "
                    f"(api_key_env) is not set",
                    version=self.name,
                )
            headers["Authorization"] = f"Bearer {key}"
        limits = self.limits
        pool = StreamingPool(
            self._origin,
            max_connections=limits.max_connections,
            max_connecting=limits.max_connecting,
            min_idle=limits.min_idle,
            timeout_s=self.timeout_s,
            idle_timeout_s=limits.idle_timeout_s,
            headers=headers,
            tls=ssl.create_default_context() if self.url.startswith("https://") else None,
        )
        failure: BaseException | None = None
        try:
            await self._check_accepts()
        except BaseException as error:
            failure = error
        if failure is not None:
            # Closed after the try, not in its handler (see rollwise.compilation).
            await pool.close()
            raise failure
        self._pool = pool
        self._ready = True

    def ready(self) -> bool:
        return self._ready

    async def predict(self, request: InferenceRequest | LlmRequest) -> InferenceResponse:
        """A request answered whole, never streamed (the shadows' call): the text as the
        first output, the measures in ``parameters["llm"]``."""
        if not isinstance(request, LlmRequest):
            raise RequestRejected(
                f"version {self.name!r} is an openai version: it takes OpenAI requests at "
                "/v1/chat/completions, /v1/completions and /v1/embeddings",
                version=self.name,
            )
        started = time.perf_counter()
        stream = await self.open(request, streamed=False)
        verdict = judge(stream.status)
        if verdict is not Verdict.ANSWERED:
            detail = await error_detail(stream)
            if verdict is Verdict.REFUSED:
                raise RequestRejected(
                    f"version {self.name!r} refused the request (HTTP {stream.status}): {detail}",
                    version=self.name,
                    upstream_status=stream.status,
                )
            raise BackendError(
                f"version {self.name}: upstream answered HTTP {stream.status}: {detail}",
                version=self.name,
            )
        body = await stream.read_all(MAX_ANSWER_BYTES)
        total_ms = (time.perf_counter() - started) * 1000.0
        if body is None:
            raise BackendError(
                f"version {self.name}: the answer is over {MAX_ANSWER_BYTES} bytes",
                version=self.name,
            )
        usage = answer_usage(
            body, total_ms, request.prompt_words, self.prices, embeddings=request.embeddings
        )
        return llm_response(usage)

    async def close(self) -> None:
        self._ready = False
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def metadata(self) -> ModelMetadata:
        return self._metadata

    # -- requests -----------------------------------------------------------------------

    def upstream_body(self, request: LlmRequest, *, streamed: bool) -> bytes:
        """The body sent upstream: the version's model, system prompt and defaults in,
        streaming only when ``streamed`` (a shadow's copy is never streamed)."""
        body = dict(request.body)
        for key, value in self.parameters.items():
            body.setdefault(key, value)
        body["model"] = self.model
        if not streamed:
            body.pop("stream", None)
            body.pop("stream_options", None)
        if self.system_prompt is not None and request.route == "/chat/completions":
            messages = body.get("messages")
            if isinstance(messages, list):
                body["messages"] = [{"role": "system", "content": self.system_prompt}, *messages]
        return orjson.dumps(body)

    async def open(self, request: LlmRequest, *, streamed: bool) -> BodyStream:
        """Send ``request`` upstream; its answer once the head is in, read at the
        caller's pace (``BackendError`` / ``BackendTimeout`` when none comes)."""
        pool = self._pool
        if pool is None:
            raise BackendError(f"version {self.name} is not loaded", version=self.name)
        body = self.upstream_body(request, streamed=streamed)
        try:
            return await pool.open("POST", self.prefix + request.route, _FIELDS, body)
        except BackendError as error:
            if error.version is None:
                error.version = self.name
            raise

    async def _check_accepts(self) -> None:
        """Ready when the endpoint's address accepts a connection: a hosted API answers
        no unauthenticated health route, and a model list costs a request."""
        parts = urlsplit(self._origin)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            async with asyncio.timeout(self.timeout_s):
                _, writer = await asyncio.open_connection(parts.hostname, port)
        except (TimeoutError, OSError) as error:
            raise BackendLoadError(
                f"version {self.name}: {connect_error(self._origin, self.timeout_s, error)}",
                version=self.name,
            ) from None
        writer.close()


def llm_response(usage: LlmUsage) -> InferenceResponse:
    """An LLM answer as an ``InferenceResponse``: its text as the one output (what the
    prediction log keeps and a comparator reads), its measures in ``parameters``."""
    text = Tensor("text", (1,), "BYTES", [usage.text])
    return InferenceResponse(outputs=(text,), parameters={"llm": usage})
