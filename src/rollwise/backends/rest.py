"""The ``rest`` backend: a version is any HTTP service, its own API passed through.

Requests to ``/proxy/{model}/{path}`` go to the routed version's ``url`` + ``path``,
unchanged (``rollwise.server.proxy``); this backend holds the connection pool to the
service (``rollwise.backends.upstream_stream``), checks that it is up, and reads the
prediction out of its answers when ``output_path`` says where it is
(``rollwise.backends.output_path``), so that shadow agreement, drift and accuracy from
feedback can be measured. Without ``output_path`` an answer carries no prediction
rollwise could read: those metrics are then absent, and a rollout that gates on them is
refused when it is applied.

Options: ``url`` (required, ``http(s)://host:port[/prefix]``: the path of each request
is appended to the prefix), ``health_path`` (a path on the url's host, not below its
prefix, as model servers keep theirs at the root, e.g. ``/ping``: GET answers 2xx when
the service is ready; without it, ready when ``url`` accepts a TCP connection),
``timeout_s`` (how long the service may take to start answering a request, and to send
each further piece of its answer; default 30), ``output_path`` (a JSONPath to the
prediction in an answer), ``headers`` (sent with every request, in place of a client's
field of the same name: an API key the clients should not hold), ``ca_file`` (PEM
certificates to trust for an https ``url``, beside the system's), and the connection
pool's ``max_connections`` (default 64), ``max_connecting``, ``min_idle`` and
``idle_timeout_s`` as for ``http``.

A version's own HTTP API is all it has: it has no Open Inference Protocol route, so a
model's versions are either all ``rest`` or none (``check_model_backends``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from rollwise.backends.base import InferenceRequest, InferenceResponse, ModelMetadata, Tensor
from rollwise.backends.exchange import ProxyRequest, Verdict, join_fields, judge
from rollwise.backends.options import check_options, http_pool_limits
from rollwise.backends.output_path import OutputPath, Reading
from rollwise.backends.upstream_conn import connect_error, header_block
from rollwise.backends.upstream_stream import BodyStream, StreamingPool
from rollwise.errors import (
    BackendError,
    BackendLoadError,
    ConfigError,
    RequestRejected,
)

__all__ = ["DEFAULT_TIMEOUT_S", "RestBackend"]

log = logging.getLogger("rollwise.backends")

DEFAULT_TIMEOUT_S = 30.0
"""A service's own API may be slower than a model server's inference route."""
_DETAIL_LIMIT = 300
_UNREADABLE_LOG_EVERY_S = 60.0
_FORBIDDEN_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
        "trailer",
        "expect",
    }
)
"""Header names a version's ``headers`` cannot set: the gateway frames each request."""


class RestBackend:
    """One version that is an HTTP service, reached through a keep-alive pool."""

    kind: str = "rest"
    artifact_sha256: str = ""
    """A service has no artifact rollwise could hash."""

    def __init__(self, name: str, options: Mapping[str, Any], base_dir: Path) -> None:
        self.name = name
        where = f"versions.{name}"
        self.url, self._origin, self.prefix = parse_base_url(options.get("url"), f"{where}.url")
        check_options(self.kind, {k: v for k, v in options.items() if k != "backend"}, where)
        self.health_path = _parse_path(options.get("health_path"), f"{where}.health_path")
        self.timeout_s = float(options.get("timeout_s", DEFAULT_TIMEOUT_S))
        self.limits = http_pool_limits(options, where)
        self._headers = _parse_headers(options.get("headers"), f"{where}.headers")
        self._replaced = frozenset(name.lower().encode("latin-1") for name in self._headers)
        raw_path = options.get("output_path")
        self.output_path = (
            None if raw_path is None else OutputPath(raw_path, f"{where}.output_path")
        )
        ca_file = options.get("ca_file")
        if ca_file is not None and not self.url.startswith("https://"):
            raise ConfigError(f"{where}.ca_file: only used with an https:// url")
        # Read when the version loads: a relative path is the config folder's.
        self._ca_file = None if ca_file is None else _resolve(str(ca_file), base_dir)
        self._pool: StreamingPool | None = None
        self._ready = False
        self._metadata = ModelMetadata(platform="rest", extra={"upstream": self.url})
        self._unreadable = 0
        self._unreadable_logged_s = float("-inf")

    # -- the Backend contract ------------------------------------------------------------

    async def load(self) -> None:
        await self.close()
        limits = self.limits
        tls = _tls_context(self.url, self._ca_file, self.name)
        pool = StreamingPool(
            self._origin,
            max_connections=limits.max_connections,
            max_connecting=limits.max_connecting,
            min_idle=limits.min_idle,
            timeout_s=self.timeout_s,
            idle_timeout_s=limits.idle_timeout_s,
            headers=self._headers,
            tls=tls,
        )
        failure: BaseException | None = None
        try:
            await self._check_ready(pool)
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

    async def predict(self, request: InferenceRequest | ProxyRequest) -> InferenceResponse:
        """A mirrored request, answered whole (the shadows' call); a 4xx answer is the
        caller's ``RequestRejected``, a 5xx the version's ``BackendError``."""
        if not isinstance(request, ProxyRequest):
            raise RequestRejected(
                f"version {self.name!r} is a rest version: it takes its own API's requests "
                "at /proxy/{model}/{path}, not inference requests",
                version=self.name,
            )
        stream = await self.open(request)
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
                f"version {self.name}: upstream {self.url} answered HTTP {stream.status}: {detail}",
                version=self.name,
            )
        if self.output_path is None:
            # Read to the end all the same: the connection then serves the next request.
            while await stream.read():
                pass
            return InferenceResponse(outputs=())
        body = await stream.read_all(request.max_answer_bytes)
        if body is None:
            self.unreadable(f"the answer is over {request.max_answer_bytes} bytes")
            return InferenceResponse(outputs=())
        return self.answer(stream, body, request.task, request.max_answer_bytes)

    async def close(self) -> None:
        self._ready = False
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def metadata(self) -> ModelMetadata:
        return self._metadata

    # -- passing requests through -------------------------------------------------------

    async def open(
        self,
        request: ProxyRequest,
        rest: AsyncIterator[bytes] | None = None,
        length: int | None = None,
    ) -> BodyStream:
        """Send ``request`` (and ``rest`` of its body as it arrives, ``length`` bytes in
        all when known) to the service; its answer, once the head is in."""
        pool = self._pool
        if pool is None:
            raise BackendError(f"version {self.name} is not loaded", version=self.name)
        try:
            fields = join_fields(request.fields, self._replaced)
        except ValueError as error:
            raise BackendError(f"version {self.name}: {error}", version=self.name) from None
        target = self.prefix + request.target if self.prefix else request.target
        try:
            return await pool.open(request.method, target, fields, request.body, rest, length)
        except BackendError as error:
            if error.version is None:
                error.version = self.name
            raise

    def answer(
        self, stream: BodyStream, body: bytes, task: str, limit_bytes: int
    ) -> InferenceResponse:
        """The prediction in a whole answer's ``body``, as one output tensor; no output
        when the version has no ``output_path`` or the answer does not fit it."""
        path = self.output_path
        if path is None:
            return InferenceResponse(outputs=())
        encoding = ""
        for name, value in stream.headers:
            if name.lower() == b"content-encoding":
                encoding = value.decode("latin-1")
        reading: Reading = path.read(
            body,
            encoding=encoding,
            classification=task == "classification",
            limit_bytes=limit_bytes,
        )
        if reading.problem:
            self.unreadable(reading.problem)
            return InferenceResponse(outputs=())
        rows = reading.rows
        text = any(isinstance(row, str) for row in rows)
        return InferenceResponse(
            outputs=(Tensor("output", (len(rows),), "BYTES" if text else "FP64", rows),)
        )

    def unreadable(self, problem: str) -> None:
        """An answer whose prediction could not be read: logged at most once a minute,
        with how often it happened meanwhile."""
        self._unreadable += 1
        now = time.monotonic()
        if now - self._unreadable_logged_s >= _UNREADABLE_LOG_EVERY_S:
            log.warning(
                "version %s: no prediction read from %d answer(s) since the last such "
                "warning; the latest: %s (output_path %s)",
                self.name,
                self._unreadable,
                problem,
                self.output_path.text if self.output_path is not None else "not set",
            )
            self._unreadable = 0
            self._unreadable_logged_s = now

    # -- internals ----------------------------------------------------------------------

    async def _check_ready(self, pool: StreamingPool) -> None:
        if self.health_path is None:
            await self._check_accepts()
            return
        try:
            response = await pool.request("GET", self.health_path)
        except BackendError as error:
            raise BackendLoadError(
                f"version {self.name}: upstream {self.url} is not ready "
                f"(GET {self.health_path}: {error})",
                version=self.name,
            ) from None
        if not 200 <= response.status < 300:
            text = response.body[: _DETAIL_LIMIT * 4].decode("utf-8", "replace").strip()
            raise BackendLoadError(
                f"version {self.name}: upstream {self.url} is not ready (GET "
                f"{self.health_path}: HTTP {response.status} {_bounded(text) or '(empty body)'})",
                version=self.name,
            )

    async def _check_accepts(self) -> None:
        """Ready without a health route: the service's address accepts a connection."""
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


async def error_detail(stream: BodyStream) -> str:
    """The start of an answer's body, for an error message; the rest is left unread and
    the connection closed (an error's body is not worth reading through)."""
    parts: list[bytes] = []
    size = 0
    failure: BackendError | None = None
    try:
        while size < _DETAIL_LIMIT * 4:
            chunk = await stream.read()
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
    except BackendError as error:
        failure = error
    stream.close()
    text = b"".join(parts)[: _DETAIL_LIMIT * 4].decode("utf-8", "replace").strip()
    if not text and failure is not None:
        return str(failure)
    return _bounded(text) if text else "(empty body)"


def _bounded(text: str) -> str:
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"


# -- options ------------------------------------------------------------------------------------


def parse_base_url(
    value: Any,
    key: str,
    *,
    example: str = "http://host:port or https://host[:port][/path]",
    credentials: str = "put credentials in headers",
) -> tuple[str, str, str]:
    """(url without a trailing slash, origin, path prefix) of a version's ``url``
    option; ``example`` and ``credentials`` say in a refusal what to write instead."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: must be a URL like {example}, got {value!r}")
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key}: must be a URL like {example}, got {value!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(
            f"{key}: must have no query, fragment or credentials ({credentials}), got {value!r}"
        )
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ConfigError(f"{key}: bad port in {value!r}") from None
    prefix = parts.path.rstrip("/")
    if prefix != quote(prefix, safe="/-._~%!$&'()*+,;=:@"):
        raise ConfigError(f"{key}: the path must be URL-encoded, got {value!r}")
    return url, f"{parts.scheme}://{parts.netloc}", prefix


def _parse_path(value: Any, key: str) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or value != quote(value, safe="/-._~%!$&'()*+,;=:@?")
    ):
        raise ConfigError(f"{key}: must be a URL-encoded path starting with /, got {value!r}")
    return value


def _parse_headers(value: Any, key: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    if value is None:
        return headers
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: must be a mapping of header names to values, got {value!r}")
    for name, item in value.items():
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise ConfigError(f"{key}.{name}: header values must be strings, got {item!r}")
        lowered = str(name).lower()
        if lowered in _FORBIDDEN_HEADERS or lowered.startswith("x-rollwise-"):
            raise ConfigError(
                f"{key}.{name}: set by the gateway itself for every request; it cannot be "
                "configured"
            )
        headers[str(name)] = str(item)
    try:
        header_block(headers)
    except ValueError as error:
        raise ConfigError(f"{key}: {error}") from None
    return headers


def _resolve(path: str, base_dir: Path) -> Path:
    found = Path(path).expanduser()
    return found if found.is_absolute() else base_dir / found


def _tls_context(url: str, ca_file: Path | None, version: str) -> ssl.SSLContext | None:
    """The TLS context of an https ``url``: the system's trusted certificates, and those
    in ``ca_file``."""
    if not url.startswith("https://"):
        return None
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as error:
            raise BackendLoadError(
                f"version {version}: cannot read the certificates of ca_file {str(ca_file)!r}: "
                f"{error}",
                version=version,
            ) from None
    return context
