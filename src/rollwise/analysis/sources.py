"""Where an external gate's figure comes from, and how its answer is read (pure).

Two sources, written in a gate of a rollout spec::

    {metric: prometheus, query: 'sum(rate(x{version="{{version}}"}[{{window}}]))',
     max_ratio: 1.2, address: http://prometheus:9090, timeout_s: 5}
    {metric: web, url: http://checks/api/ok, method: POST, json_path: $.ok,
     timeout_s: 5, bearer_token_env: ROLLWISE_SECRET_CHECKS_TOKEN}

A Prometheus query (and a web URL) is a template: ``{{model}}``, ``{{version}}`` (the
version the figure is for: each arm in turn for a relative bound, else the candidate),
``{{stable}}``, ``{{candidate}}`` and ``{{window}}``, a PromQL duration such as ``42s``:
the whole seconds since the current step began to be measured (at least ``1s``), so a
``rate(...[{{window}}])`` covers exactly the traffic under the current weights. Any
other ``{{name}}`` is refused when the spec is read.

The answer must be one number: a Prometheus ``scalar`` or a ``vector`` of exactly one
sample (aggregate with ``sum``/``max`` to get there); a web answer is JSON, and
``json_path`` (jsonpath-ng, default ``$``) must match exactly one number or boolean.
Anything else is a *problem*, described in words, and the gate stays inconclusive.

A web gate's secret comes from the environment: ``bearer_token_env`` must name a variable
starting with ``ROLLWISE_SECRET_``, and its ``headers`` may not hold a literal credential
(see :mod:`rollwise.secrets_env`), because specs are written by operators and shown to
viewers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rollwise.errors import ConfigError
from rollwise.secrets_env import SPEC_ENV_PREFIX, check_literal_header, check_spec_env_name

PLACEHOLDERS = ("model", "version", "stable", "candidate", "window")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
PROMETHEUS_KEYS = ("query", "address", "timeout_s")
WEB_KEYS = ("url", "method", "json_path", "headers", "timeout_s", "bearer_token_env")
WEB_METHODS = ("GET", "POST")
DEFAULT_WEB_TIMEOUT_S = 5.0
MAX_TIMEOUT_S = 60.0
MIN_WINDOW_S = 1
_SHOWN_CHARS = 200


@dataclass(frozen=True, slots=True)
class PrometheusSource:
    """A PromQL template; ``address`` and ``timeout_s`` override the config's."""

    query: str
    address: str | None = None
    timeout_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"query": self.query}
        if self.address is not None:
            out["address"] = self.address
        if self.timeout_s is not None:
            out["timeout_s"] = self.timeout_s
        return out

    def describe(self) -> str:
        return f"prometheus {_cut(self.query, 60)!r}"


@dataclass(frozen=True, slots=True)
class WebSource:
    """An HTTP endpoint answering JSON; ``headers`` are sent as written (no secrets:
    the spec is stored and shown), the bearer token comes from ``bearer_token_env``."""

    url: str
    method: str = "GET"
    json_path: str = "$"
    headers: tuple[tuple[str, str], ...] = ()
    timeout_s: float = DEFAULT_WEB_TIMEOUT_S
    bearer_token_env: str | None = None
    implicit_bound: bool = False
    """No bound was written: the gate wants ``true`` (or a number of at least 1)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "method": self.method}
        if self.json_path != "$":
            out["json_path"] = self.json_path
        if self.headers:
            out["headers"] = dict(self.headers)
        if self.timeout_s != DEFAULT_WEB_TIMEOUT_S:
            out["timeout_s"] = self.timeout_s
        if self.bearer_token_env is not None:
            out["bearer_token_env"] = self.bearer_token_env
        return out

    def describe(self) -> str:
        return f"web {self.method} {_cut(self.url, 60)}"


Source = PrometheusSource | WebSource


@dataclass(frozen=True, slots=True)
class GateContext:
    """What a template and a POSTed web check know of the rollout."""

    model: str
    stable: str
    candidate: str
    phase: str
    step: int
    """Counted from 1, as in events."""
    steps: int
    window_s: int

    def values(self, version: str) -> dict[str, str]:
        return {
            "model": self.model,
            "version": version,
            "stable": self.stable,
            "candidate": self.candidate,
            "window": f"{self.window_s}s",
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "stable": self.stable,
            "candidate": self.candidate,
            "phase": self.phase,
            "step": self.step,
            "steps": self.steps,
            "window_s": self.window_s,
        }


def window_seconds(measure_since_s: float, now_s: float) -> int:
    """``{{window}}`` in seconds: since the step's measurements began, at least 1."""
    return max(MIN_WINDOW_S, math.ceil(now_s - measure_since_s))


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each ``{{name}}`` replaced (names checked at parse time)."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def placeholders(template: str) -> list[str]:
    return [m.group(1) for m in _PLACEHOLDER.finditer(template)]


def check_template(template: str, where: str) -> None:
    unknown = [name for name in placeholders(template) if name not in PLACEHOLDERS]
    if unknown:
        known = ", ".join("{{" + p + "}}" for p in PLACEHOLDERS)
        raise ConfigError(f"{where}: unknown placeholder {{{{{unknown[0]}}}}} (known: {known})")


# -- reading answers -----------------------------------------------------------------------


def _cut(text: str, limit: int = _SHOWN_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sample_value(sample: Any) -> float | str:
    """A Prometheus ``[timestamp, "value"]`` pair's value."""
    if not isinstance(sample, list | tuple) or len(sample) != 2:
        return f"a sample that is not [time, value]: {_cut(repr(sample))}"
    try:
        value = float(sample[1])
    except (TypeError, ValueError):
        return f"a value that is not a number: {_cut(repr(sample[1]))}"
    if not math.isfinite(value):
        return f"the value {sample[1]} (e.g. a rate of nothing, 0/0)"
    return value


def prometheus_value(answer: Any) -> float | str:
    """The number in a Prometheus ``/api/v1/query`` answer, or what came back instead."""
    if not isinstance(answer, Mapping):
        return f"not a Prometheus answer: {_cut(repr(answer))}"
    if answer.get("status") != "success":
        error = answer.get("error") or answer.get("status")
        return f"Prometheus error: {_cut(str(error))}"
    data = answer.get("data")
    if not isinstance(data, Mapping):
        return "a Prometheus answer without data"
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return _sample_value(result)
    if kind == "vector" and isinstance(result, list):
        if len(result) == 1 and isinstance(result[0], Mapping):
            return _sample_value(result[0].get("value"))
        if not result:
            return "an empty vector: no series matched (no traffic yet, or a wrong label)"
        labels = ", ".join(
            _cut(str(item.get("metric", {})), 80)
            for item in result[:3]
            if isinstance(item, Mapping)
        )
        more = ", …" if len(result) > 3 else ""
        return (
            f"a vector of {len(result)} series ({labels}{more}); aggregate to one "
            "(e.g. sum(...) or sum by () (...))"
        )
    if kind == "matrix":
        return "a range vector (matrix); wrap the range in a function such as rate(...)"
    return f"a result of type {kind!r}, not a scalar or a one-element vector"


def web_value(answer: Any, json_path: str) -> float | bool | str:
    """The number or boolean ``json_path`` picks out of a web answer, or the problem."""
    from jsonpath_ng.ext.parser import parse as parse_jsonpath

    matches = [m.value for m in parse_jsonpath(json_path).find(answer)]
    if len(matches) != 1:
        return f"{json_path} matched {len(matches)} values in {_cut(repr(answer))}; need one"
    value = matches[0]
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return f"{json_path} is {_cut(repr(value))}, not a number or a boolean"


# -- parsing ----------------------------------------------------------------------------


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be non-empty text, got {value!r}")
    return value.strip()


def _http_url(data: Mapping[str, Any], key: str, where: str) -> str:
    url = _text(data, key, where)
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: {key} must be an http:// or https:// URL, got {url!r}")
    return url.rstrip("/") if key == "address" else url


def _timeout(data: Mapping[str, Any], where: str) -> float | None:
    if "timeout_s" not in data:
        return None
    value = data["timeout_s"]
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_TIMEOUT_S
    ):
        raise ConfigError(
            f"{where}: timeout_s must be seconds in (0, {MAX_TIMEOUT_S:g}], got {value!r}"
        )
    return float(value)


def parse_prometheus(data: Mapping[str, Any], *, relative: bool, where: str) -> PrometheusSource:
    if "query" not in data:
        raise ConfigError(f"{where}: metric 'prometheus' needs a query (PromQL)")
    query = _text(data, "query", where)
    check_template(query, f"{where}.query")
    if relative and "version" not in placeholders(query):
        raise ConfigError(
            f"{where}.query: a relative bound runs the query once per version, so it must "
            "name the version with {{version}}, e.g. "
            'rollwise_requests_total{version="{{version}}"}'
        )
    address = _http_url(data, "address", where) if "address" in data else None
    return PrometheusSource(query, address, _timeout(data, where))


def parse_web(data: Mapping[str, Any], *, implicit_bound: bool, where: str) -> WebSource:
    if "url" not in data:
        raise ConfigError(f"{where}: metric 'web' needs a url")
    url = _http_url(data, "url", where)
    check_template(url, f"{where}.url")
    method = data.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in WEB_METHODS:
        raise ConfigError(f"{where}: method must be GET or POST, got {method!r}")
    json_path = data.get("json_path", "$")
    if not isinstance(json_path, str) or not json_path.strip():
        raise ConfigError(
            f"{where}: json_path must be a JSONPath such as $.value, got {json_path!r}"
        )
    from jsonpath_ng.exceptions import JSONPathError
    from jsonpath_ng.ext.parser import parse as parse_jsonpath

    try:
        parse_jsonpath(json_path)
    except (JSONPathError, Exception) as error:  # jsonpath-ng raises plain Exceptions too
        raise ConfigError(f"{where}: json_path {json_path!r} does not parse: {error}") from None
    raw_headers = data.get("headers", {})
    if not isinstance(raw_headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw_headers.items()
    ):
        raise ConfigError(f"{where}: headers must map names to text, got {raw_headers!r}")
    for name in raw_headers:
        # Same rule as hook headers: a literal credential would be stored and shown.
        check_literal_header(
            name, f"{where}.headers.{name}", f"bearer_token_env: {SPEC_ENV_PREFIX}CHECKS_TOKEN"
        )
    token_env = data.get("bearer_token_env")
    if token_env is not None:
        if not isinstance(token_env, str) or not token_env.strip():
            raise ConfigError(
                f"{where}: bearer_token_env must name an environment variable, got {token_env!r}"
            )
        check_spec_env_name(token_env, f"{where}.bearer_token_env")
    timeout_s = _timeout(data, where)
    return WebSource(
        url,
        method.upper(),
        json_path.strip(),
        tuple(sorted(raw_headers.items())),
        DEFAULT_WEB_TIMEOUT_S if timeout_s is None else timeout_s,
        token_env,
        implicit_bound,
    )
