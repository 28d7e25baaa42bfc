"""How the store writes JSON: compact, keys sorted, numpy values as plain numbers.

Sorted keys make equal values equal text, so rows compare and diff cleanly. Paths
become strings; anything else that is not JSON raises ``TypeError``.
"""

from __future__ import annotations

import os
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
