"""A model's text comparator, as written under ``models.<name>.comparator``::

    comparator: {kind: exact, case: true, whitespace: true, punctuation: true}
    comparator: {kind: similarity, threshold: 0.85}
    comparator: {kind: embedding, url: http://127.0.0.1:8000/v1, model: text-embed,
                 threshold: 0.9, api_key_env: EMBED_KEY, timeout_s: 10}
    comparator: {kind: judge, url: http://127.0.0.1:8000/v1, model: judge-1,
                 api_key_env: JUDGE_KEY, timeout_s: 30, prompt: "..."}

``exact``, ``similarity`` and ``embedding`` say whether the shadow agreed with the stable
version (``shadow_agreement``); ``judge`` which answer was better (``win_rate``). ``url``
is an OpenAI-compatible base URL including ``/v1``, as OpenAI clients take it; the API
key is read from the environment variable ``api_key_env`` names, never from the file.
``concurrency`` (default 4) and ``queue`` (default 256) bound the calls in flight and
waiting; comparisons beyond are dropped and counted. :func:`parse_comparator` raises
:class:`~rollwise.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from rollwise.analysis.text_compare import DEFAULT_JUDGE_PROMPT, Normalisation
from rollwise.errors import ConfigError


class ComparatorKind(StrEnum):
    EXACT = "exact"
    SIMILARITY = "similarity"
    EMBEDDING = "embedding"
    JUDGE = "judge"

    @property
    def calls_endpoint(self) -> bool:
        return self in (ComparatorKind.EMBEDDING, ComparatorKind.JUDGE)


@dataclass(frozen=True, slots=True)
class ComparatorSpec:
    """One model's comparator (see the module docstring)."""

    kind: ComparatorKind
    normalisation: Normalisation = field(default_factory=Normalisation)
    threshold: float = 1.0
    url: str = ""
    model: str = ""
    api_key_env: str | None = None
    timeout_s: float = 30.0
    prompt: str = DEFAULT_JUDGE_PROMPT
    concurrency: int = 4
    queue: int = 256


_KEYS: dict[ComparatorKind, tuple[str, ...]] = {
    ComparatorKind.EXACT: ("case", "whitespace", "punctuation"),
    ComparatorKind.SIMILARITY: ("case", "whitespace", "punctuation", "threshold"),
    ComparatorKind.EMBEDDING: (
        "url",
        "model",
        "threshold",
        "api_key_env",
        "timeout_s",
        "concurrency",
        "queue",
    ),
    ComparatorKind.JUDGE: (
        "url",
        "model",
        "api_key_env",
        "timeout_s",
        "prompt",
        "concurrency",
        "queue",
    ),
}
_DEFAULT_THRESHOLD = {ComparatorKind.SIMILARITY: 0.9, ComparatorKind.EMBEDDING: 0.9}


def parse_comparator(
    data: Any, *, where: str = "comparator", environ: Mapping[str, str] | None = None
) -> ComparatorSpec:
    """A :class:`ComparatorSpec` from its config mapping. With ``environ``, the variable
    ``api_key_env`` names must be set in it."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: must be a mapping with a 'kind', got {data!r}")
    raw_kind = data.get("kind")
    try:
        kind = ComparatorKind(str(raw_kind))
    except ValueError:
        names = ", ".join(k.value for k in ComparatorKind)
        raise ConfigError(f"{where}.kind: {raw_kind!r} is not one of {names}") from None
    known = ("kind", *_KEYS[kind])
    for key in data:
        if key not in known:
            raise ConfigError(
                f"{where}: unknown key {key!r} for kind {kind.value} (known: {', '.join(known)})"
            )
    values: dict[str, Any] = {}
    flags = {k: _flag(data, k, where) for k in ("case", "whitespace", "punctuation") if k in data}
    values["normalisation"] = Normalisation(**flags)
    if kind in _DEFAULT_THRESHOLD:
        threshold = _number(data, "threshold", where, _DEFAULT_THRESHOLD[kind])
        low = -1.0 if kind is ComparatorKind.EMBEDDING else 0.0
        if not low <= threshold <= 1.0:
            raise ConfigError(f"{where}.threshold: must be in [{low:g}, 1], got {threshold!r}")
        values["threshold"] = threshold
    if kind.calls_endpoint:
        for key in ("url", "model"):
            value = data.get(key)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where}.{key}: required, a non-empty string; got {value!r}")
            values[key] = value
        if not values["url"].startswith(("http://", "https://")):
            raise ConfigError(
                f"{where}.url: must be an http(s) base URL including /v1, got {values['url']!r}"
            )
        values["url"] = values["url"].rstrip("/")
        env_name = data.get("api_key_env")
        if env_name is not None:
            if not isinstance(env_name, str) or not env_name:
                raise ConfigError(f"{where}.api_key_env: must be a variable name, got {env_name!r}")
            if environ is not None and not environ.get(env_name):
                raise ConfigError(
                    f"{where}.api_key_env: the environment variable {env_name!r} is not set"
                )
            values["api_key_env"] = env_name
        timeout_s = _number(data, "timeout_s", where, 30.0)
        if not 0 < timeout_s <= 600:
            raise ConfigError(f"{where}.timeout_s: must be in (0, 600], got {timeout_s!r}")
        values["timeout_s"] = timeout_s
        for key, default, top in (("concurrency", 4, 256), ("queue", 256, 100_000)):
            value = data.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
                raise ConfigError(
                    f"{where}.{key}: must be a whole number in [1, {top}], got {value!r}"
                )
            values[key] = value
        if "prompt" in data:
            prompt = data["prompt"]
            if not isinstance(prompt, str) or not prompt.strip():
                raise ConfigError(f"{where}.prompt: must be a non-empty string, got {prompt!r}")
            values["prompt"] = prompt
    return ComparatorSpec(kind, **values)


def _flag(data: Mapping[str, Any], key: str, where: str) -> bool:
    value = data[key]
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}: must be true or false, got {value!r}")
    return value


def _number(data: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}.{key}: must be a finite number, got {value!r}")
    return float(value)
