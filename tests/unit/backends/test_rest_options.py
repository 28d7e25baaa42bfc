"""A ``rest`` version's options, checked at start-up without connecting to anything, and
the rule that a model's versions are all ``rest`` or none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollwise.backends import validate_backend_options
from rollwise.backends.options import check_model_backends, unreadable_predictions
from rollwise.backends.rest import RestBackend
from rollwise.config import parse_config
from rollwise.domain import VersionSpec
from rollwise.errors import ConfigError


def check(options: dict[str, Any]) -> None:
    validate_backend_options(VersionSpec("v1", "rest", options), model="iris")


def refusal(options: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        check(options)
    return str(caught.value)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"url": "http://127.0.0.1:8080"}, id="a-bare-origin"),
        pytest.param(
            {"url": "http://ts:8080/predictions/iris", "health_path": "/ping"}, id="a-prefix"
        ),
        pytest.param({"url": "https://api.example.com/v1/"}, id="https"),
        pytest.param(
            {
                "url": "http://sm:8080/invocations",
                "output_path": "$.predictions[*].label",
                "timeout_s": 2.5,
                "headers": {"X-Api-Key": "k", "Authorization": "Bearer svc"},
                "max_connections": 8,
                "min_idle": 1,
            },
            id="everything",
        ),
    ],
)
def test_good_options_pass(options: dict[str, Any]) -> None:
    check(options)


@pytest.mark.parametrize(
    ("options", "key", "why"),
    [
        pytest.param({}, "url", "required for backend 'rest'", id="no-url"),
        pytest.param({"url": "ftp://h/x"}, "url", "must be a URL like", id="not-http"),
        pytest.param({"url": "http:///x"}, "url", "must be a URL like", id="no-host"),
        pytest.param({"url": "http://h/p?q=1"}, "url", "no query", id="a-query"),
        pytest.param({"url": "http://u:p@h"}, "url", "credentials", id="credentials"),
        pytest.param({"url": "http://h:99999"}, "url", "bad port", id="bad-port"),
        pytest.param(
            {"url": "http://h", "health_path": "ping"},
            "health_path",
            "starting with /",
            id="a-relative-health-path",
        ),
        pytest.param(
            {"url": "http://h", "output_path": "$.a["},
            "output_path",
            "is not a JSONPath",
            id="a-broken-output-path",
        ),
        pytest.param(
            {"url": "http://h", "headers": {"Connection": "close"}},
            "headers.Connection",
            "set by the gateway itself",
            id="a-hop-by-hop-header",
        ),
        pytest.param(
            {"url": "http://h", "headers": {"X-Rollwise-Token": "t"}},
            "headers.X-Rollwise-Token",
            "set by the gateway itself",
            id="rollwises-own-header",
        ),
        pytest.param(
            {"url": "http://h", "ca_file": "ca.pem"},
            "ca_file",
            "only used with an https",
            id="ca-file-without-https",
        ),
        pytest.param(
            {"url": "http://h", "timeout_s": 0},
            "timeout_s",
            "positive number of seconds",
            id="zero-timeout",
        ),
        pytest.param(
            {"url": "http://h", "model": "iris"},
            "model",
            "unknown option for backend 'rest'",
            id="an-http-backend-option",
        ),
    ],
)
def test_bad_options_are_refused_naming_the_key(
    options: dict[str, Any], key: str, why: str
) -> None:
    message = refusal(options)
    assert message.startswith(f"models.iris.versions.v1.{key}: "), message
    assert why in message


def test_the_path_of_each_request_goes_below_the_urls_prefix() -> None:
    backend = RestBackend("v1", {"url": "http://ts:8080/predictions/iris/"}, Path("."))
    assert backend.prefix == "/predictions/iris"
    assert backend.url == "http://ts:8080/predictions/iris"


@pytest.mark.parametrize(
    ("kinds", "refused"),
    [
        pytest.param({"v1": "rest", "v2": "rest"}, False, id="all-rest"),
        pytest.param({"v1": "sklearn", "v2": "onnx", "v3": "http"}, False, id="none-rest"),
        pytest.param({"v1": "rest", "v2": "http"}, True, id="rest-and-http"),
        pytest.param({"v1": "sklearn", "v2": "rest"}, True, id="sklearn-and-rest"),
    ],
)
def test_a_models_versions_are_all_rest_or_none(kinds: dict[str, str], refused: bool) -> None:
    if not refused:
        check_model_backends(kinds, "models.iris.versions")
        return
    with pytest.raises(ConfigError) as caught:
        check_model_backends(kinds, "models.iris.versions")
    assert "are all rest" in str(caught.value)


def test_a_config_that_mixes_rest_with_in_process_versions_is_refused() -> None:
    data = {
        "models": {
            "iris": {
                "stable": "v1",
                "versions": {
                    "v1": {"backend": "fake", "label": 1},
                    "v2": {"backend": "rest", "url": "http://127.0.0.1:9000"},
                },
            }
        }
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data, base_dir=Path("."), source="rollwise.yaml", environ={})
    message = str(caught.value)
    assert message.startswith("rollwise.yaml: models.iris.versions: versions v2 are backend 'rest'")
    assert "v1 (fake) are not" in message


@pytest.mark.parametrize(
    ("backend", "options", "readable"),
    [
        pytest.param("rest", {"url": "http://h"}, False, id="rest-without-output-path"),
        pytest.param("rest", {"url": "http://h", "output_path": "$.y"}, True, id="rest-with"),
        pytest.param("sklearn", {"path": "m.skops"}, True, id="in-process"),
        pytest.param("http", {"url": "http://h"}, True, id="oip"),
    ],
)
def test_which_versions_predictions_rollwise_can_read(
    backend: str, options: dict[str, Any], readable: bool
) -> None:
    why = unreadable_predictions(backend, options, "v2")
    assert (why == "") is readable
    if not readable:
        assert why == (
            "version v2 is a rest version without output_path, so rollwise cannot read its "
            "predictions"
        )
