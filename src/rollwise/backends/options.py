"""Which options each backend kind takes, checked before anything is loaded.

The schemas are plain data so that config validation at start-up can check every
version without importing scikit-learn or onnxruntime. Errors name the full key
(``models.<model>.versions.<version>.<option>``), the value found and what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rollwise.errors import ConfigError

BACKEND_KINDS: tuple[str, ...] = ("sklearn", "onnx", "python", "http", "fake")

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


@dataclass(frozen=True, slots=True)
class Option:
    """One option: the kind of value it takes and its bounds."""

    type: str
    """``str``, ``bool``, ``int``, ``number``, ``str_list``, ``paths``, ``mapping``, ``scalar``,
    ``sha256``, ``target`` or ``any``."""
    required: bool = False
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
            "path": Option("str", required=True),
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
            "path": Option("str", required=True),
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
    # The HTTP backend checks its own options beyond the address.
    "http": Schema({"url": Option("str", required=True)}, open=True),
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
    if kind in ("str", "target", "sha256"):
        if not isinstance(value, str) or not value.strip():
            return "must be a non-empty string"
        if kind == "sha256" and not _SHA256.fullmatch(value.strip()):
            return "must be 64 hexadecimal digits (the file's SHA-256)"
        if kind == "target" and not _TARGET.fullmatch(value.strip()):
            return "must look like 'package.module:callable'"
        if option.choices and value not in option.choices:
            return f"must be one of {', '.join(option.choices)}"
        return None
    if kind == "bool":
        return None if isinstance(value, bool) else "must be true or false"
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


def check_options(kind: str, options: Mapping[str, Any], where: str) -> None:
    """Raise ``ConfigError`` for a missing, unknown or ill-typed option of ``kind``."""
    schema = SCHEMAS.get(kind)
    if schema is None:
        raise unknown_kind(kind, where)
    if not isinstance(options, Mapping):
        raise ConfigError(f"{where}: options must be a mapping, got {type(options).__name__}")
    for key, option in schema.options.items():
        if option.required and key not in options:
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
    if kind == "python" and "kwargs" in options and options.get("factory") is not True:
        raise ConfigError(
            f"{where}.kwargs: only used with factory: true (kwargs are passed to the "
            "target once, at load)"
        )
    if kind == "fake" and options.get("echo") is True:
        for key in ("outputs", "label"):
            if key in options:
                raise ConfigError(f"{where}.{key}: cannot be combined with echo: true")
