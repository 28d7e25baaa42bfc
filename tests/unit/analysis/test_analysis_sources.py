"""External gates' sources: templates, the window, reading answers, parsing the gate."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollwise.analysis.gates import Bound, Metric, parse_gate
from rollwise.analysis.sources import (
    GateContext,
    PrometheusSource,
    WebSource,
    check_template,
    prometheus_value,
    render,
    web_value,
    window_seconds,
)
from rollwise.errors import ConfigError

CONTEXT = GateContext("iris", "v1", "v2", "progressing", 3, 7, 95)


# -- templates --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "version", "expected"),
    [
        pytest.param(
            'x{model="{{model}}",version="{{version}}"}',
            "v2",
            'x{model="iris",version="v2"}',
            id="model and version",
        ),
        pytest.param("rate(x[{{window}}])", "v2", "rate(x[95s])", id="window as a duration"),
        pytest.param("{{ stable }}/{{candidate}}", "v1", "v1/v2", id="spaces inside braces"),
        pytest.param('x{version="{{version}}"}', "v1", 'x{version="v1"}', id="the stable arm"),
        pytest.param("sum(x)", "v2", "sum(x)", id="no placeholders"),
    ],
)
def test_render_fills_every_placeholder(template: str, version: str, expected: str) -> None:
    assert render(template, CONTEXT.values(version)) == expected


def test_an_unknown_placeholder_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"gates\[0\].query: unknown placeholder \{\{modle\}\}"):
        check_template('x{model="{{modle}}"}', "gates[0].query")


@pytest.mark.parametrize(
    ("since", "now", "seconds"),
    [
        pytest.param(100.0, 100.0, 1, id="at the step's start: at least 1 s"),
        pytest.param(100.0, 100.2, 1, id="a fraction rounds up"),
        pytest.param(100.0, 142.5, 43, id="whole seconds, rounded up"),
        pytest.param(100.0, 99.0, 1, id="a clock behind the step"),
    ],
)
def test_window_is_the_seconds_since_the_step_began(since: float, now: float, seconds: int) -> None:
    assert window_seconds(since, now) == seconds


@given(st.floats(0, 1e9), st.floats(0, 1e6))
def test_window_covers_the_whole_step(since: float, elapsed: float) -> None:
    seconds = window_seconds(since, since + elapsed)

    assert seconds >= 1
    assert seconds >= elapsed


# -- Prometheus answers -----------------------------------------------------------------


def _vector(*values: str) -> dict[str, Any]:
    result = [{"metric": {"version": f"v{i}"}, "value": [1.0, v]} for i, v in enumerate(values)]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(
            {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "0.25"]}},
            0.25,
            id="a scalar",
        ),
        pytest.param(_vector("0.031"), 0.031, id="a one-element vector"),
        pytest.param(_vector("+Inf"), "the value +Inf", id="infinity is a problem"),
        pytest.param(_vector("NaN"), "the value NaN", id="NaN (0/0) is a problem"),
        pytest.param(_vector(), "an empty vector", id="no series"),
        pytest.param(_vector("1", "2"), "a vector of 2 series", id="two series"),
        pytest.param(
            {"status": "success", "data": {"resultType": "matrix", "result": []}},
            "a range vector",
            id="a matrix",
        ),
        pytest.param(
            {"status": "success", "data": {"resultType": "string", "result": [1.0, "x"]}},
            "a result of type 'string'",
            id="a string",
        ),
        pytest.param(
            {"status": "error", "errorType": "bad_data", "error": "parse error at char 4"},
            "Prometheus error: parse error at char 4",
            id="a query error",
        ),
        pytest.param([1, 2], "not a Prometheus answer", id="not a mapping"),
        pytest.param(
            {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "abc"]}},
            "not a number",
            id="a value that is no number",
        ),
    ],
)
def test_prometheus_value(answer: Any, expected: float | str) -> None:
    got = prometheus_value(answer)

    if isinstance(expected, float):
        assert got == pytest.approx(expected)
    else:
        assert isinstance(got, str) and expected in got


def test_many_series_are_named_in_the_problem() -> None:
    got = prometheus_value(_vector("1", "2", "3", "4"))

    assert isinstance(got, str)
    assert "'version': 'v0'" in got and "…" in got and "sum" in got


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_any_finite_sample_reads_back(value: float) -> None:
    assert prometheus_value(_vector(repr(value))) == value


# -- web answers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "path", "expected"),
    [
        pytest.param({"ok": True}, "$.ok", True, id="true"),
        pytest.param({"ok": False}, "$.ok", False, id="false"),
        pytest.param({"score": 3}, "$.score", 3.0, id="an integer"),
        pytest.param(0.5, "$", 0.5, id="a bare number with the default path"),
        pytest.param({"a": [{"v": 1}, {"v": 2}]}, "$.a[?(@.v > 1)].v", 2.0, id="a filter"),
        pytest.param({"a": [1, 2]}, "$.a[*]", "matched 2 values", id="two matches"),
        pytest.param({"a": 1}, "$.b", "matched 0 values", id="no match"),
        pytest.param({"a": "1"}, "$.a", "not a number or a boolean", id="text"),
        pytest.param({"a": None}, "$.a", "not a number or a boolean", id="null"),
    ],
)
def test_web_value(answer: Any, path: str, expected: float | bool | str) -> None:
    got = web_value(answer, path)

    if isinstance(expected, str):
        assert isinstance(got, str) and expected in got
    else:
        assert got == expected and type(got) is type(expected)


# -- parsing gates -----------------------------------------------------------------------

QUERY = 'sum(rate(x{version="{{version}}"}[{{window}}]))'


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        pytest.param({"metric": "prometheus", "max": 1}, "needs a query", id="no query"),
        pytest.param(
            {"metric": "prometheus", "query": "sum(x)"},
            "needs exactly one bound",
            id="prometheus without a bound",
        ),
        pytest.param(
            {"metric": "prometheus", "query": "sum(x)", "max_ratio": 1.1},
            "must name the version with {{version}}",
            id="a relative bound without version",
        ),
        pytest.param(
            {"metric": "prometheus", "query": QUERY, "max_ratio": 0},
            "max_ratio must be > 0",
            id="a ratio of 0",
        ),
        pytest.param(
            {"metric": "prometheus", "query": "x{m='{{mdl}}'}", "max": 1},
            "unknown placeholder {{mdl}}",
            id="a misspelt placeholder",
        ),
        pytest.param(
            {"metric": "prometheus", "query": QUERY, "max": 1, "test": "fixed"},
            "run no statistical test",
            id="a statistical test",
        ),
        pytest.param(
            {"metric": "prometheus", "query": QUERY, "max": 1, "address": "prom:9090"},
            "address must be an http:// or https:// URL",
            id="an address without a scheme",
        ),
        pytest.param(
            {"metric": "prometheus", "query": QUERY, "max": 1, "timeout_s": 0},
            "timeout_s must be seconds in (0, 60]",
            id="a zero timeout",
        ),
        pytest.param({"metric": "web"}, "needs a url", id="web without a url"),
        pytest.param(
            {"metric": "web", "url": "http://x", "max_increase": 1},
            "takes an absolute bound",
            id="web with a relative bound",
        ),
        pytest.param(
            {"metric": "web", "url": "http://x", "method": "PUT"},
            "method must be GET or POST",
            id="web with PUT",
        ),
        pytest.param(
            {"metric": "web", "url": "http://x", "json_path": "$[["},
            "json_path '$[[' does not parse",
            id="a path that does not parse",
        ),
        pytest.param(
            {"metric": "web", "url": "http://x", "headers": {"a": 1}},
            "headers must map names to text",
            id="a header that is a number",
        ),
        pytest.param(
            {"metric": "web", "url": "http://x", "headers": {"Authorization": "Bearer abc"}},
            "gates[2].headers.Authorization: a credential must come from the environment, "
            "e.g. bearer_token_env: ROLLWISE_SECRET_CHECKS_TOKEN",
            id="a literal Authorization header",
        ),
        pytest.param(
            {"metric": "web", "url": "http://x", "headers": {"X-Api-Key": "abc"}},
            "gates[2].headers.X-Api-Key: a credential must come from the environment",
            id="a literal api key header",
        ),
        pytest.param(
            {"metric": "web", "url": "http://x", "bearer_token_env": "ROLLWISE_TOKENS"},
            "gates[2].bearer_token_env: environment variable 'ROLLWISE_TOKENS' may not be "
            "named in a rollout spec: only variables whose names start with ROLLWISE_SECRET_ "
            "can be (an admin puts a secret there for specs to use)",
            id="a token variable without the prefix",
        ),
        pytest.param(
            {"metric": "web", "url": "http://x", "bearer_token_env": "ROLLWISE_SECRET_"},
            "environment variable 'ROLLWISE_SECRET_' may not be named",
            id="the bare prefix",
        ),
        pytest.param(
            {"metric": "web", "url": "http://x", "bearer_token_env": "rollwise_secret_x"},
            "environment variable 'rollwise_secret_x' may not be named",
            id="the prefix in lower case",
        ),
        pytest.param(
            {"metric": "web", "url": "http://x", "min_samples": -1},
            "min_samples must be >= 0",
            id="negative min_samples",
        ),
        pytest.param(
            {"metric": "web", "url": "http://x", "query": "y"},
            "unknown key 'query' for metric web",
            id="a prometheus key on a web gate",
        ),
    ],
)
def test_bad_external_gates_are_refused_naming_the_key(gate: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="gates\\[2\\]") as error:
        parse_gate(gate, where="gates[2]")

    assert message in str(error.value)


def test_a_prometheus_gate_parses_with_every_bound() -> None:
    for bound in Bound:
        gate = parse_gate({"metric": "prometheus", "query": QUERY, bound.value: 1.5})

        assert gate.metric is Metric.PROMETHEUS and gate.bound is bound
        assert gate.min_samples == 0
        assert gate.source == PrometheusSource(QUERY)


def test_a_web_gate_without_a_bound_wants_true() -> None:
    gate = parse_gate({"metric": "web", "url": "http://x/ok", "method": "post"})

    assert isinstance(gate.source, WebSource)
    assert gate.source.method == "POST" and gate.source.implicit_bound
    assert gate.describe() == "web POST http://x/ok answers true"


@pytest.mark.parametrize(
    "written",
    [
        pytest.param({"metric": "prometheus", "query": QUERY, "max_ratio": 1.2}, id="ratio"),
        pytest.param(
            {
                "metric": "prometheus",
                "query": "sum(x)",
                "min": 0.02,
                "address": "http://p:9090",
                "timeout_s": 2.0,
                "min_samples": 50,
            },
            id="every prometheus key",
        ),
        pytest.param({"metric": "web", "url": "http://x", "method": "GET"}, id="web, no bound"),
        pytest.param(
            {
                "metric": "web",
                "url": "http://x/{{model}}",
                "method": "POST",
                "json_path": "$.score",
                "headers": {"X-Team": "ml"},
                "timeout_s": 1.0,
                "bearer_token_env": "ROLLWISE_SECRET_TOKEN",
                "max": 0.3,
            },
            id="every web key",
        ),
    ],
)
def test_an_external_gate_round_trips_through_to_dict(written: dict[str, Any]) -> None:
    gate = parse_gate(written)

    assert parse_gate(gate.to_dict()) == gate
    assert gate.to_dict() == written


def test_external_gates_are_hashable_and_equal_by_value() -> None:
    one = parse_gate({"metric": "web", "url": "http://x", "headers": {"b": "2", "a": "1"}})
    two = parse_gate({"metric": "web", "url": "http://x", "headers": {"a": "1", "b": "2"}})

    assert one == two and hash(one) == hash(two)
    assert not math.isnan(hash(one))
