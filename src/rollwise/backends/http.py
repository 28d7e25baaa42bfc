"""The ``http`` backend: a model version served by an Open Inference Protocol (V2) server.

Predictions go to ``POST {url}/v2/models/{model}/infer`` through a keep-alive connection
pool (``rollwise.backends.upstream``). A request that arrived as OIP JSON is forwarded byte
for byte; only requests built in Python are encoded. ``load`` checks that the upstream has
the model ready and reads its metadata; it does not wait for a server that is still starting.

Options: ``url`` (required, ``http://host:port[/prefix]``), ``model`` (the upstream's name
for the model; default: the version name), ``timeout_s`` (per request, default 5),
``headers`` (sent with every request), and how the connection pool grows and idles
(``rollwise.backends.options.PoolLimits``): ``max_connections`` (default 64),
``max_connecting`` (connections opening at once, until their first answer; default 4),
``min_idle`` (kept open while idle; default 2) and ``idle_timeout_s`` (default 4).

An upstream's answer to an inference request is judged by its status: 400, 413 and 422
say the request itself is bad (OIP servers answer 400 for a wrong shape, datatype or
output name), so they become ``RequestRejected`` carrying the upstream's own message, the
caller's error; every other non-2xx answer (a missing model, refused credentials, a
content type the gateway chose, overload, timeouts, 5xx) is the version's failure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from rollwise.backends.base import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    Tensor,
    TensorSpec,
    flatten,
)
from rollwise.backends.options import check_options, http_pool_limits
from rollwise.backends.upstream import UpstreamPool, UpstreamResponse
from rollwise.errors import BackendError, BackendLoadError, ConfigError, RequestRejected
from rollwise.tracing import UPSTREAM_HEADERS

__all__ = ["CALLER_ERROR_STATUSES", "HttpBackend", "UpstreamStatusError", "inference_error"]

# How much of an upstream's error message (or body) ends up in an error message: it may
# echo the caller's whole input.
_DETAIL_LIMIT = 300

CALLER_ERROR_STATUSES = frozenset({400, 413, 422})
"""Upstream statuses that mean the inference request itself is bad. Not among them: 404
(the version's model is gone), 401/403 (the version's credentials), 408 and 429 (the
version is slow or overloaded), 415 and 431 (the content type and headers are the
gateway's, from the version's config)."""


class UpstreamStatusError(BackendError):
    """The upstream answered with a status other than 2xx."""

    def __init__(self, message: str, *, status: int, detail: str, version: str | None) -> None:
        super().__init__(message, version=version)
        self.status = status
        self.detail = detail
        """The upstream's own ``error`` message, or the start of its body."""


class HttpBackend:
    """One version whose model runs behind an OIP V2 REST endpoint."""

    kind: str = "http"
    artifact_sha256: str = ""
    """An upstream server has no artifact rollwise could hash."""

    def __init__(self, name: str, options: Mapping[str, Any], base_dir: Path) -> None:
        # base_dir is part of every backend's constructor; nothing here is a file.
        del base_dir
        self.name = name
        where = f"versions.{name}"
        # The address first: its message says what a URL should look like, also when
        # there is none.
        self.url, self._origin, prefix = _parse_url(options.get("url"), f"{where}.url")
        check_options(self.kind, {k: v for k, v in options.items() if k != "backend"}, where)
        model = options.get("model", name)
        self.model = model
        self.timeout_s = float(options.get("timeout_s", 5.0))
        self.limits = http_pool_limits(options, where)
        self._headers = _parse_headers(options.get("headers"), f"{where}.headers")
        quoted = quote(model, safe="")
        self._model_path = f"{prefix}/v2/models/{quoted}"
        self._infer_path = f"{self._model_path}/infer"
        self._ready_path = f"{self._model_path}/ready"
        self._health_path = f"{prefix}/v2/health/ready"
        self._pool: UpstreamPool | None = None
        self._ready = False
        self._metadata = ModelMetadata(platform="", extra={"upstream": self.url, "model": model})

    # -- the Backend contract ------------------------------------------------------------

    async def load(self) -> None:
        await self.close()
        limits = self.limits
        pool = UpstreamPool(
            self._origin,
            max_connections=limits.max_connections,
            max_connecting=limits.max_connecting,
            min_idle=limits.min_idle,
            timeout_s=self.timeout_s,
            idle_timeout_s=limits.idle_timeout_s,
            headers=self._headers,
        )
        failure: BaseException | None = None
        try:
            await self._check_ready(pool)
            metadata = await self._fetch_metadata(pool)
        except BaseException as error:
            failure = error
        if failure is not None:
            # Closed after the try, not in its handler (see rollwise.compilation).
            await pool.close()
            if isinstance(failure, BackendError) and not isinstance(failure, BackendLoadError):
                raise BackendLoadError(
                    f"version {self.name}: cannot load model {self.model!r}: {failure}",
                    version=self.name,
                ) from failure
            raise failure
        self._metadata = metadata
        self._pool = pool
        self._ready = True

    def ready(self) -> bool:
        return self._ready

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        pool = self._pool
        if pool is None:
            raise BackendError(f"version {self.name} is not loaded", version=self.name)
        body = request.raw if request.raw is not None else encode_request(request)
        try:
            # A traced request's traceparent, so that the model server's spans join
            # its trace; None (the cached head) when requests are not traced.
            response = await pool.request("POST", self._infer_path, body, UPSTREAM_HEADERS.get())
        except BackendError as exc:
            if exc.version is None:
                exc.version = self.name
            raise
        if not 200 <= response.status < 300:
            raise inference_error(response, version=self.name, url=self.url)
        try:
            return decode_response(response.body)
        except ValueError as exc:
            raise BackendError(
                f"version {self.name}: upstream {self.url} sent a malformed inference "
                f"response: {exc}",
                version=self.name,
            ) from None

    async def close(self) -> None:
        self._ready = False
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def metadata(self) -> ModelMetadata:
        return self._metadata

    # -- internals ----------------------------------------------------------------------------

    async def _check_ready(self, pool: UpstreamPool) -> None:
        response = await pool.request("GET", self._ready_path)
        if 200 <= response.status < 300:
            return
        if response.status in (404, 405, 501):
            # Not every server has per-model readiness; its health check will do, and
            # the metadata request that follows tells whether the model exists.
            health = await pool.request("GET", self._health_path)
            if 200 <= health.status < 300:
                return
            raise BackendLoadError(
                f"version {self.name}: upstream {self.url} is not ready "
                f"(GET {self._health_path}: HTTP {health.status} {_detail(health)})",
                version=self.name,
            )
        raise BackendLoadError(
            f"version {self.name}: upstream {self.url} model {self.model!r} is not ready "
            f"(HTTP {response.status} {_detail(response)})",
            version=self.name,
        )

    async def _fetch_metadata(self, pool: UpstreamPool) -> ModelMetadata:
        response = await pool.request("GET", self._model_path)
        if response.status == 404:
            raise BackendLoadError(
                f"version {self.name}: upstream {self.url} has no model {self.model!r} "
                f"({_detail(response)})",
                version=self.name,
            )
        if not 200 <= response.status < 300:
            raise BackendLoadError(
                f"version {self.name}: upstream {self.url} refused the metadata of model "
                f"{self.model!r} (HTTP {response.status} {_detail(response)})",
                version=self.name,
            )
        try:
            return decode_metadata(response.body, upstream=self.url, model=self.model)
        except ValueError as exc:
            raise BackendLoadError(
                f"version {self.name}: upstream {self.url} sent malformed metadata for model "
                f"{self.model!r}: {exc}",
                version=self.name,
            ) from None


# -- upstream answers ---------------------------------------------------------------------------


def inference_error(
    response: UpstreamResponse, *, version: str, url: str
) -> RequestRejected | UpstreamStatusError:
    """The error a non-2xx answer to an inference request stands for: the caller's
    (``RequestRejected``) for ``CALLER_ERROR_STATUSES``, else the version's."""
    detail = _detail(response)
    status = response.status
    if status in CALLER_ERROR_STATUSES:
        # The caller sees this message: the upstream's words, not where it runs.
        return RequestRejected(
            f"version {version!r} refused the request (HTTP {status} from its server): {detail}",
            version=version,
            upstream_status=status,
        )
    return UpstreamStatusError(
        f"version {version}: upstream {url} refused the inference request "
        f"(HTTP {status}): {detail}",
        status=status,
        detail=detail,
        version=version,
    )


# -- OIP JSON -----------------------------------------------------------------------------------


def encode_request(request: InferenceRequest) -> bytes:
    """The OIP JSON body of ``request``."""
    document: dict[str, Any] = {
        "inputs": [
            {
                "name": tensor.name,
                "shape": list(tensor.shape),
                "datatype": tensor.datatype,
                "data": tensor.data,
            }
            for tensor in request.inputs
        ]
    }
    if request.id:
        document["id"] = request.id
    if request.parameters:
        document["parameters"] = dict(request.parameters)
    if request.outputs:
        document["outputs"] = [{"name": name} for name in request.outputs]
    try:
        return orjson.dumps(document, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:
        raise BackendError(f"cannot encode the request as OIP JSON: {exc}") from None


def _json_default(value: Any) -> Any:
    # BYTES tensors may carry bytes; OIP JSON carries them as strings.
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8")
    # numpy scalars and arrays orjson does not take natively (e.g. non-contiguous).
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(value, tuple | range):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def decode_response(body: bytes) -> InferenceResponse:
    """An ``InferenceResponse`` from OIP JSON; ``ValueError`` says what is wrong."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    outputs = document.get("outputs")
    if not isinstance(outputs, list):
        raise ValueError("'outputs' is missing or not a list")
    tensors = tuple([_output_tensor(item, index) for index, item in enumerate(outputs)])
    version = document.get("model_version")
    parameters = document.get("parameters")
    return InferenceResponse(
        outputs=tensors,
        model_version=version if isinstance(version, str) else "",
        parameters=parameters if isinstance(parameters, dict) else {},
    )


def _output_tensor(item: Any, index: int) -> Tensor:
    if not isinstance(item, dict):
        raise ValueError(f"outputs[{index}] is not an object")
    name = item.get("name")
    datatype = item.get("datatype")
    shape = item.get("shape")
    data = item.get("data")
    if not isinstance(name, str):
        raise ValueError(f"outputs[{index}].name is not a string")
    if not isinstance(datatype, str):
        raise ValueError(f"output {name!r}: datatype is not a string")
    if not isinstance(shape, list):
        raise ValueError(f"output {name!r}: shape is not a list of non-negative integers")
    # A loop, not all() over a generator: this runs for every answer.
    for dim in shape:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise ValueError(f"output {name!r}: shape is not a list of non-negative integers")
    if not isinstance(data, list):
        raise ValueError(f"output {name!r}: data is not a list")
    if data and isinstance(data[0], list):
        # Some servers nest the data by shape; rollwise keeps tensors flat.
        data = flatten(data)
    if len(data) != math.prod(shape):
        raise ValueError(
            f"output {name!r}: shape {shape} needs {math.prod(shape)} values, got {len(data)}"
        )
    return Tensor(name=name, shape=tuple(shape), datatype=datatype, data=data)


def decode_metadata(body: bytes, *, upstream: str, model: str) -> ModelMetadata:
    """``ModelMetadata`` from an OIP model metadata document."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    platform = document.get("platform", "")
    if not isinstance(platform, str):
        raise ValueError("'platform' is not a string")
    extra: dict[str, Any] = {"upstream": upstream, "model": model}
    for key in ("name", "versions"):
        if key in document:
            extra[key] = document[key]
    return ModelMetadata(
        platform=platform,
        inputs=_specs(document.get("inputs", []), "inputs"),
        outputs=_specs(document.get("outputs", []), "outputs"),
        extra=extra,
    )


def _specs(items: Any, where: str) -> tuple[TensorSpec, ...]:
    if not isinstance(items, list):
        raise ValueError(f"'{where}' is not a list")
    specs = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"{where}[{index}] is not an object")
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise ValueError(f"{where}[{index}] needs a string name and datatype")
        # -1 marks a dimension of any size.
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape
        ):
            raise ValueError(f"{where}[{index}].shape is not a list of integers")
        specs.append(TensorSpec(name=name, datatype=datatype, shape=tuple(shape)))
    return tuple(specs)


def _detail(response: UpstreamResponse) -> str:
    """The upstream's own words for an error: OIP's ``error`` field, else its body; at
    most ``_DETAIL_LIMIT`` characters either way."""
    try:
        document = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict):
        for key in ("error", "detail", "message"):
            value = document.get(key)
            if isinstance(value, str) and value.strip():
                return _bounded(value.strip())
    # Decoded past the limit's bytes only: a multi-byte character cut in half becomes
    # one replacement character rather than an error.
    text = response.body[: _DETAIL_LIMIT * 4].decode("utf-8", "replace").strip()
    return _bounded(text) if text else "(empty body)"


def _bounded(text: str) -> str:
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"


# -- options ------------------------------------------------------------------------------------


def _parse_url(value: Any, key: str) -> tuple[str, str, str]:
    """(url as given without a trailing slash, origin, path prefix) of the ``url`` option."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: must be a URL like http://host:port, got {value!r}")
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme == "https":
        raise ConfigError(f"{key}: https upstreams are not supported yet, got {value!r}")
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"{key}: must be a URL like http://host:port, got {value!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"{key}: must have no query, fragment or credentials, got {value!r}")
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ConfigError(f"{key}: bad port in {value!r}") from None
    prefix = parts.path.rstrip("/")
    if prefix != quote(prefix, safe="/-._~%!$&'()*+,;=:@"):
        raise ConfigError(f"{key}: the path must be URL-encoded, got {value!r}")
    return url, f"http://{parts.netloc}", prefix


def _parse_headers(value: Any, key: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    if value is not None and not isinstance(value, Mapping):
        raise ConfigError(f"{key}: must be a mapping of header names to values, got {value!r}")
    for name, item in (value or {}).items():
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise ConfigError(f"{key}.{name}: header values must be strings, got {item!r}")
        headers[str(name)] = str(item)
    if not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = "application/json"
    try:
        # The pool checks names and values; a mistake should surface as a config error.
        UpstreamPool("http://127.0.0.1", headers=headers)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    return headers
