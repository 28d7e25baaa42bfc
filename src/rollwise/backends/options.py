"""Which options each backend kind takes, checked before anything is loaded.

The schemas are plain data so that config validation at start-up can check every
version without importing scikit-learn or onnxruntime. Errors name the full key
(``models.<model>.versions.<version>.<option>``), the value found and what is allowed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from rollwise.errors import ConfigError

BACKEND_KINDS: tuple[str, ...] = (
    "sklearn",
    "onnx",
    "python",
    "http",
    "rest",
    "openai",
    "fake",
    "mlflow",
)

FILE_KINDS: tuple[str, ...] = ("sklearn", "onnx")
"""The kinds whose artifact is one file, from ``path`` or ``url``."""

ARTIFACT_URL_SCHEMES: tuple[str, ...] = ("https", "http", "file")

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
# MLflow's own rules: a version is a positive integer, an alias is word characters and
# hyphens. A name may hold anything but the separators.
_MODEL_VERSION = re.compile(r"models:/(?P<name>[^/@]+)/(?P<version>[1-9][0-9]*)")
_MODEL_ALIAS = re.compile(r"models:/(?P<name>[^/@]+)@(?P<alias>[\w-]+)")
_RUN = re.compile(r"runs:/(?P<run_id>[^/]+)/(?P<path>[^/].*)")
MLFLOW_URI_FORMS = "models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/PATH"


@dataclass(frozen=True, slots=True)
class MlflowUri:
    """An MLflow model URI taken apart: a registered version, an alias, or a run's path."""

    uri: str
    form: Literal["version", "alias", "run"]
    name: str = ""
    version: str = ""
    alias: str = ""
    run_id: str = ""
    path: str = ""


def parse_mlflow_uri(uri: str) -> MlflowUri | None:
    """``uri`` taken apart, or None when it is none of the forms rollwise loads."""
    if (found := _MODEL_VERSION.fullmatch(uri)) is not None:
        return MlflowUri(uri, "version", name=found["name"], version=found["version"])
    if (found := _MODEL_ALIAS.fullmatch(uri)) is not None:
        return MlflowUri(uri, "alias", name=found["name"], alias=found["alias"])
    if (found := _RUN.fullmatch(uri)) is not None:
        return MlflowUri(uri, "run", run_id=found["run_id"], path=found["path"].rstrip("/"))
    return None


@dataclass(frozen=True, slots=True)
class Option:
    """One option: the kind of value it takes and its bounds."""

    type: str
    """``str``, ``bool``, ``int``, ``count`` (an integer, worded as such when below its
    minimum), ``number``, ``seconds`` (positive and finite), ``str_list``, ``paths``,
    ``mapping``, ``scalar``, ``sha256``, ``target``, ``artifact_url``, ``mlflow_uri`` or
    ``any``."""
    required: bool = False
    unless: tuple[str, ...] = ()
    """A required option may be left out when one of these is given instead."""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Schema:
    options: Mapping[str, Option]
    open: bool = False
    """When true, keys not listed are allowed (the backend checks them itself)."""


SCHEMAS: Mapping[str, Schema] = {
    "sklearn": Schema(
        {
            "timeout_s": Option("number", minimum=0.001),
            "max_concurrency": Option("int", minimum=1),
            "path": Option("str", required=True, unless=("url",)),
            "url": Option("artifact_url"),
            "max_bytes": Option("int", minimum=1),
            "download_timeout_s": Option("number", minimum=0.001),
            "format": Option("str", choices=("auto", "skops", "pickle")),
            "trusted_types": Option("str_list"),
            "trusted": Option("bool"),
            "sha256": Option("sha256"),
            "probabilities": Option("bool"),
        }
    ),
    "onnx": Schema(
        {
            "timeout_s": Option("number", minimum=0.001),
            "max_concurrency": Option("int", minimum=1),
            "path": Option("str", required=True, unless=("url",)),
            "url": Option("artifact_url"),
            "max_bytes": Option("int", minimum=1),
            "download_timeout_s": Option("number", minimum=0.001),
            "sha256": Option("sha256"),
            "intra_op_threads": Option("int", minimum=1),
            "inter_op_threads": Option("int", minimum=1),
        }
    ),
    "python": Schema(
        {
            "timeout_s": Option("number", minimum=0.001),
            "max_concurrency": Option("int", minimum=1),
            "target": Option("target", required=True),
            "factory": Option("bool"),
            "kwargs": Option("mapping"),
            "python_path": Option("paths"),
            "n_features": Option("int", minimum=1),
            "output": Option("str"),
        }
    ),
    "fake": Schema(
        {
            "outputs": Option("mapping"),
            "echo": Option("bool"),
            "label": Option("scalar"),
            "latency_ms": Option("number", minimum=0),
            "latency_jitter_ms": Option("number", minimum=0),
            "load_latency_ms": Option("number", minimum=0),
            "error_rate": Option("number", minimum=0, maximum=1),
            "seed": Option("int"),
            "fail_load": Option("str"),
            "fail_after": Option("int", minimum=0),
            "n_features": Option("int", minimum=1),
        }
    ),
    # The url and headers are checked further as the backend is built; protocol: grpc
    # builds the gRPC upstream backend (backends.grpc_upstream) instead.
    "http": Schema(
        {
            "url": Option("str", required=True),
            "protocol": Option("str", choices=("rest", "grpc")),
            "model": Option("str"),
            "timeout_s": Option("seconds"),
            "max_connections": Option("count", minimum=1),
            "max_connecting": Option("count", minimum=1),
            "min_idle": Option("count", minimum=0),
            "idle_timeout_s": Option("seconds"),
            "headers": Option("mapping"),
        }
    ),
    # Any HTTP service, its own API passed through; the url, paths and headers are
    # checked further as the backend is built.
    "rest": Schema(
        {
            "url": Option("str", required=True),
            "health_path": Option("str"),
            "timeout_s": Option("seconds"),
            "output_path": Option("str"),
            "headers": Option("mapping"),
            "ca_file": Option("str"),
            "max_connections": Option("count", minimum=1),
            "max_connecting": Option("count", minimum=1),
            "min_idle": Option("count", minimum=0),
            "idle_timeout_s": Option("seconds"),
        }
    ),
    # An OpenAI-compatible endpoint (rollwise.backends.openai); the url, key and
    # parameters are checked further as the backend is built.
    "openai": Schema(
        {
            "url": Option("str", required=True),
            "model": Option("str", required=True),
            "api_key_env": Option("str"),
            "timeout_s": Option("seconds"),
            "system_prompt": Option("str"),
            "parameters": Option("mapping"),
            "price_per_1k_prompt": Option("number", minimum=0),
            "price_per_1k_completion": Option("number", minimum=0),
            "max_connections": Option("count", minimum=1),
            "max_connecting": Option("count", minimum=1),
            "min_idle": Option("count", minimum=0),
            "idle_timeout_s": Option("seconds"),
        }
    ),
    # A model from an MLflow registry, loaded by the sklearn or onnx backend: it takes
    # their options too and passes on those the chosen one knows.
    "mlflow": Schema(
        {
            "timeout_s": Option("number", minimum=0.001),
            "max_concurrency": Option("int", minimum=1),
            "uri": Option("mlflow_uri", required=True),
            "tracking_uri": Option("str"),
            "registry_uri": Option("str"),
            "flavor": Option("str", choices=("onnx", "sklearn")),
            "trusted_types": Option("str_list"),
            "trusted": Option("bool"),
            "sha256": Option("sha256"),
            "probabilities": Option("bool"),
            "intra_op_threads": Option("int", minimum=1),
            "inter_op_threads": Option("int", minimum=1),
        }
    ),
}


def version_key(version: str, model: str | None = None) -> str:
    """The config key of a version, as error messages name it."""
    return f"models.{model}.versions.{version}" if model else f"versions.{version}"


def unknown_kind(kind: str, where: str) -> ConfigError:
    return ConfigError(
        f"{where}.backend: unknown backend {kind!r}; valid kinds are {', '.join(BACKEND_KINDS)}"
    )


def _problem(option: Option, value: Any) -> str | None:
    """What is wrong with ``value`` for ``option``, or None when it fits."""
    kind = option.type
    if kind == "any":
        return None
    if kind in ("str", "target", "sha256", "artifact_url", "mlflow_uri"):
        if not isinstance(value, str) or not value.strip():
            return "must be a non-empty string"
        if kind == "sha256" and not _SHA256.fullmatch(value.strip()):
            return "must be 64 hexadecimal digits (the file's SHA-256)"
        if kind == "target" and not _TARGET.fullmatch(value.strip()):
            return "must look like 'package.module:callable'"
        if kind == "artifact_url":
            return _url_problem(value)
        if kind == "mlflow_uri" and parse_mlflow_uri(value) is None:
            hint = ""
            if value.startswith("models:/") and "@" not in value:
                # models:/NAME/latest and stage names move; an alias moves too, but it is
                # pinned to one version when the version is registered.
                hint = "; to follow a version that moves, use an alias (models:/NAME@ALIAS)"
            return f"must be {MLFLOW_URI_FORMS}{hint}"
        if option.choices and value not in option.choices:
            return f"must be one of {', '.join(option.choices)}"
        return None
    if kind == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    if kind == "count":
        if isinstance(value, bool) or not isinstance(value, int) or value < (option.minimum or 0):
            return f"must be an integer of at least {option.minimum or 0:g}"
        return None
    if kind == "seconds":
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            return "must be a positive number of seconds"
        if not math.isfinite(value):
            return "must be a finite number of seconds"
        return None
    if kind in ("int", "number"):
        numeric = (int,) if kind == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, numeric):
            return "must be an integer" if kind == "int" else "must be a number"
        if option.minimum is not None and value < option.minimum:
            return f"must be at least {option.minimum:g}"
        if option.maximum is not None and value > option.maximum:
            return f"must be at most {option.maximum:g}"
        return None
    if kind == "str_list":
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            return "must be a list of strings"
        return None
    if kind == "paths":
        if isinstance(value, str) and value:
            return None
        if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
            return None
        return "must be a path or a list of paths"
    if kind == "mapping":
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            return "must be a mapping with string keys"
        return None
    if kind == "scalar":
        if isinstance(value, str | int | float | bool):
            return None
        return "must be a string, number or boolean"
    raise AssertionError(f"unknown option type {kind!r}")


def _url_problem(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ARTIFACT_URL_SCHEMES:
        return "must be an https://, http:// or file:// URL of the model file"
    if parts.scheme != "file" and not parts.hostname:
        return "must name a host"
    if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
        return "must be a local file:// URL (file:///path/to/model)"
    if not parts.path.rstrip("/"):
        return "must name a file"
    return None


def check_options(kind: str, options: Mapping[str, Any], where: str) -> None:
    """Raise ``ConfigError`` for a missing, unknown or ill-typed option of ``kind``."""
    schema = SCHEMAS.get(kind)
    if schema is None:
        raise unknown_kind(kind, where)
    if not isinstance(options, Mapping):
        raise ConfigError(f"{where}: options must be a mapping, got {type(options).__name__}")
    for key, option in schema.options.items():
        if option.required and key not in options and not any(k in options for k in option.unless):
            raise ConfigError(f"{where}.{key}: required for backend {kind!r}")
    for key, value in options.items():
        known = schema.options.get(key)
        if known is None:
            if schema.open:
                continue
            raise ConfigError(
                f"{where}.{key}: unknown option for backend {kind!r}; "
                f"valid options are {', '.join(schema.options)}"
            )
        problem = _problem(known, value)
        if problem is not None:
            raise ConfigError(f"{where}.{key}: {problem}, got {value!r}")
    _check_combinations(kind, options, where)


def _check_combinations(kind: str, options: Mapping[str, Any], where: str) -> None:
    if kind in FILE_KINDS:
        _check_artifact_source(options, where)
    if kind == "python" and "kwargs" in options and options.get("factory") is not True:
        raise ConfigError(
            f"{where}.kwargs: only used with factory: true (kwargs are passed to the "
            "target once, at load)"
        )
    if kind in ("http", "rest", "openai"):
        http_pool_limits(options, where)
    if kind == "fake" and options.get("echo") is True:
        for key in ("outputs", "label"):
            if key in options:
                raise ConfigError(f"{where}.{key}: cannot be combined with echo: true")


def _check_artifact_source(options: Mapping[str, Any], where: str) -> None:
    """A file backend's artifact comes from ``path`` or from ``url`` with its sha256."""
    url = options.get("url")
    if url is None:
        for key in ("max_bytes", "download_timeout_s"):
            if key in options:
                raise ConfigError(f"{where}.{key}: only used with url (a file to download)")
        return
    if "path" in options:
        raise ConfigError(
            f"{where}.url: cannot be combined with path; an artifact comes from one place"
        )
    if "sha256" not in options:
        # A download is trusted only when its content is known in advance.
        raise ConfigError(
            f"{where}.url: url artifacts need sha256: add sha256 with the SHA-256 of the "
            f"file at {url}, so that the download is checked before it is loaded"
        )


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """How an ``http`` version's connection pool to its upstream may grow and idle."""

    max_connections: int = 64
    max_connecting: int = 4
    """Connections opening at once: connecting, or waiting for their first answer."""
    min_idle: int = 2
    """Connections kept open, ready, while the version has no traffic."""
    idle_timeout_s: float = 4.0
    """Below the keep-alive of common servers (uvicorn: 5 s), so the pool closes an idle
    connection before the server does, not while a request is on its way."""


def http_pool_limits(options: Mapping[str, Any], where: str) -> PoolLimits:
    """The pool limits of an ``http`` or ``rest`` version whose options passed
    ``check_options``.

    ``max_connecting`` and ``min_idle`` left out shrink to ``max_connections`` when it is
    smaller than their defaults; set above it, they are refused.
    """
    defaults = PoolLimits()
    most = options.get("max_connections", defaults.max_connections)
    limits: dict[str, int] = {}
    for key in ("max_connecting", "min_idle"):
        value = options.get(key)
        if value is None:
            value = min(getattr(defaults, key), most)
        elif value > most:
            raise ConfigError(
                f"{where}.{key}: {value} is more than max_connections ({most}); "
                f"raise max_connections or lower {key}"
            )
        limits[key] = value
    return PoolLimits(
        max_connections=most,
        max_connecting=limits["max_connecting"],
        min_idle=limits["min_idle"],
        idle_timeout_s=float(options.get("idle_timeout_s", defaults.idle_timeout_s)),
    )


OWN_PROTOCOLS: tuple[str, ...] = ("rest", "openai")
"""Kinds whose versions take requests in a protocol of their own, not inference
requests: a model's versions are all of one such kind or none."""


def _one_protocol(kinds: Mapping[str, str], own: str, where: str) -> None:
    """Refuse a model that mixes ``own`` (an ``OWN_PROTOCOLS`` kind) with other kinds."""
    mine = sorted(name for name, kind in kinds.items() if kind == own)
    other = sorted(name for name, kind in kinds.items() if kind != own)
    if mine and other:
        raise ConfigError(
            f"{where}: versions {', '.join(mine)} are backend {own!r} and "
            f"{', '.join(f'{n} ({kinds[n]})' for n in other)} are not; a model's versions "
            f"are all {own} or none, as its clients speak one protocol: give the {own} "
            "versions a model of their own"
        )


PASS_THROUGH = "rest"
"""The kind whose versions answer their own API's requests (``/proxy/{model}/{path}``),
not inference requests."""


def unreadable_predictions(backend: str, options: Mapping[str, Any], version: str) -> str:
    """Why rollwise cannot read the predictions of a version; "" when it can."""
    if backend == PASS_THROUGH and not options.get("output_path"):
        return (
            f"version {version} is a rest version without output_path, so rollwise cannot "
            "read its predictions"
        )
    return ""


def check_model_backends(kinds: Mapping[str, str], where: str) -> None:
    """Refuse a model whose versions (name → backend kind) mix ``rest`` with other kinds.

    A ``rest`` version takes the application's own requests at ``/proxy/{model}/...``
    and answers them with its own API; every other kind takes inference requests at
    ``/v2/models/{model}/infer`` or ``/models/{model}/predict``. Traffic split between
    the two would send each request to some versions that cannot read it, so a model is
    one or the other; to compare a model server with an OIP version, put both behind
    ``rest`` (an OIP server is an HTTP service too).
    """
    for own in OWN_PROTOCOLS:
        if own != PASS_THROUGH:
            _one_protocol(kinds, own, where)
    rest = sorted(name for name, kind in kinds.items() if kind == PASS_THROUGH)
    other = sorted(name for name, kind in kinds.items() if kind != PASS_THROUGH)
    if rest and other:
        raise ConfigError(
            f"{where}: versions {', '.join(rest)} are backend 'rest' and "
            f"{', '.join(f'{n} ({kinds[n]})' for n in other)} are not; a model's versions "
            "are all rest (its clients call /proxy/MODEL/... with the service's own API) or "
            "none (its clients send inference requests): give the rest versions a model "
            "of their own"
        )
