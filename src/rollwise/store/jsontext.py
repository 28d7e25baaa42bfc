"""How the store writes JSON: compact, keys sorted, numpy values as plain numbers.

Sorted keys make equal values equal text, so rows compare and diff cleanly, and the
same text fingerprints a value (``fingerprint``). Paths become strings; anything else
that is not JSON raises ``TypeError``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

import orjson

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _default(value: object) -> object:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class UnstorableValue(TypeError):
    """A value given to the store cannot be written as JSON."""


def dumps_json(value: object) -> str:
    try:
        return orjson.dumps(value, default=_default, option=_OPTIONS).decode()
    except orjson.JSONEncodeError as exc:
        raise UnstorableValue(str(exc)) from exc


def loads_json(text: str | bytes) -> Any:
    return orjson.loads(text)


def fingerprint(value: object) -> str:
    """The sha256 (hex) of ``value`` as canonical JSON: equal values, equal fingerprints,
    whatever the order of their keys."""
    return hashlib.sha256(dumps_json(value).encode()).hexdigest()


def spec_fingerprint(backend: str, options: Mapping[str, Any]) -> str:
    """The ``spec_sha256`` of a version: its backend with the options as requested.

    The config sync and the control API both call this, so that the same spec has the
    same fingerprint whichever way it arrives.
    """
    return fingerprint({"backend": backend, "options": dict(options)})
