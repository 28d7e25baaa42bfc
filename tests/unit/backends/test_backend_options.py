"""Backend options are checked at start-up, without loading any model."""

from __future__ import annotations

from typing import Any

import pytest

from rollwise.backends import BACKEND_KINDS, validate_backend_options
from rollwise.backends.options import SCHEMAS
from rollwise.domain import VersionSpec
from rollwise.errors import ConfigError


def check(kind: str, options: dict[str, Any]) -> None:
    validate_backend_options(VersionSpec("v1", kind, options), model="iris")


def refusal(kind: str, options: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        check(kind, options)
    return str(caught.value)


def test_every_kind_has_a_schema() -> None:
    assert (
        set(SCHEMAS)
        == set(BACKEND_KINDS)
        == {"sklearn", "onnx", "python", "http", "rest", "openai", "fake", "mlflow"}
    )


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("sklearn", {"path": "m.skops", "trusted_types": ["sklearn.tree._tree.Tree"]}),
        ("sklearn", {"path": "m.joblib", "trusted": True, "sha256": "A" * 64}),
        ("onnx", {"path": "m.onnx", "intra_op_threads": 2}),
        ("python", {"target": "pkg.mod:make", "factory": True, "kwargs": {"a": 1}}),
        ("python", {"target": "pkg.mod:Class.predict", "python_path": ["lib", "src"]}),
        ("fake", {}),
        ("fake", {"label": "cat", "latency_ms": 2.5, "error_rate": 1, "seed": 3}),
        ("fake", {"echo": True, "fail_after": 0}),
        ("http", {"url": "http://127.0.0.1:9001", "model": "iris", "timeout_s": 2}),
    ],
)
def test_good_options_pass(kind: str, options: dict[str, Any]) -> None:
    check(kind, options)


@pytest.mark.parametrize(
    ("kind", "key"),
    [("sklearn", "path"), ("onnx", "path"), ("python", "target"), ("http", "url")],
)
def test_a_missing_required_option_names_its_full_key(kind: str, key: str) -> None:
    assert refusal(kind, {}) == f"models.iris.versions.v1.{key}: required for backend {kind!r}"


def test_an_unknown_option_is_named_with_the_valid_ones() -> None:
    message = refusal("fake", {"latncy_ms": 5})
    assert message.startswith("models.iris.versions.v1.latncy_ms: unknown option")
    assert "latency_ms" in message


@pytest.mark.parametrize(
    ("kind", "options", "expected"),
    [
        (
            "sklearn",
            {"path": "m.pkl", "trusted": "yes"},
            "trusted: must be true or false, got 'yes'",
        ),
        ("sklearn", {"path": "m.pkl", "sha256": "abc"}, "sha256: must be 64 hexadecimal digits"),
        ("sklearn", {"path": "m", "format": "h5"}, "format: must be one of auto, skops, pickle"),
        (
            "sklearn",
            {"path": "m", "trusted_types": "x"},
            "trusted_types: must be a list of strings",
        ),
        ("onnx", {"path": ""}, "path: must be a non-empty string"),
        ("onnx", {"path": "m", "intra_op_threads": 0}, "intra_op_threads: must be at least 1"),
        ("onnx", {"path": "m", "intra_op_threads": True}, "intra_op_threads: must be an integer"),
        (
            "python",
            {"target": "module.predict"},
            "target: must look like 'package.module:callable'",
        ),
        ("python", {"target": "m:f", "kwargs": {"a": 1}}, "kwargs: only used with factory: true"),
        ("python", {"target": "m:f", "python_path": 3}, "python_path: must be a path or a list"),
        ("fake", {"error_rate": 1.5}, "error_rate: must be at most 1, got 1.5"),
        ("fake", {"latency_ms": -1}, "latency_ms: must be at least 0"),
        ("fake", {"label": [1]}, "label: must be a string, number or boolean"),
        ("fake", {"outputs": [1]}, "outputs: must be a mapping"),
        ("fake", {"echo": True, "label": 1}, "label: cannot be combined with echo: true"),
    ],
)
def test_a_bad_value_is_named_with_its_key_and_what_is_allowed(
    kind: str, options: dict[str, Any], expected: str
) -> None:
    message = refusal(kind, options)
    assert message.startswith("models.iris.versions.v1.")
    assert expected in message


def test_an_unknown_kind_lists_the_valid_kinds() -> None:
    assert refusal("torch", {}) == (
        "models.iris.versions.v1.backend: unknown backend 'torch'; "
        "valid kinds are sklearn, onnx, python, http, rest, openai, fake, mlflow"
    )


def test_the_model_name_may_be_left_out() -> None:
    spec = VersionSpec("v2", "onnx", {})
    with pytest.raises(ConfigError, match=r"^models\.iris\.versions\.v2\.path"):
        validate_backend_options(spec, model="iris")
    with pytest.raises(ConfigError, match=r"^versions\.v2\.path"):
        validate_backend_options(spec)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"url": "ftp://host"}, "models.iris.versions.v1.url", id="not http"),
        pytest.param(
            {"url": "http://127.0.0.1:9", "timeout_s": 0},
            "models.iris.versions.v1.timeout_s",
            id="zero timeout",
        ),
        pytest.param(
            {"url": "http://127.0.0.1:9", "pool": 3},
            "models.iris.versions.v1.pool: unknown option",
            id="unknown option",
        ),
    ],
)
def test_http_options_are_checked_before_start_up(options: dict[str, object], message: str) -> None:
    assert refusal("http", options).startswith(message)
