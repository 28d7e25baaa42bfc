"""Version files and ``--option`` pairs of ``rollwise versions add`` and ``deploy
--version``: what gets registered, and every refusal naming what is wrong."""

from __future__ import annotations

from typing import Any

import pytest

from rollwise.cli import VersionRequest, parse_option_pairs, version_request
from rollwise.errors import ConfigError, ValidationError

ONNX = {"backend": "onnx", "path": "iris-v4.onnx", "sha256": "ab" * 32}
NUMBERED_KEY: dict[Any, Any] = {1: "x", **ONNX}


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        pytest.param(["path=iris.onnx"], {"path": "iris.onnx"}, id="text stays text"),
        pytest.param(["intra_op_threads=2"], {"intra_op_threads": 2}, id="a whole number"),
        pytest.param(["timeout_s=2.5"], {"timeout_s": 2.5}, id="a decimal number"),
        pytest.param(["tolerance=1e-6"], {"tolerance": 1e-6}, id="an exponent is a number"),
        pytest.param(
            ["trusted=true", "probabilities=False"],
            {"trusted": True, "probabilities": False},
            id="booleans",
        ),
        pytest.param(["label=null"], {"label": None}, id="null"),
        pytest.param(["seed='7'"], {"seed": "7"}, id="quotes keep a number as text"),
        pytest.param(["trusted_types=[a.B, c.D]"], {"trusted_types": ["a.B", "c.D"]}, id="a list"),
        pytest.param(["headers={x-a: 1}"], {"headers": {"x-a": 1}}, id="a mapping"),
        pytest.param(
            ["token=Bearer a:b"], {"token": "Bearer a:b"}, id="a colon does not make a mapping"
        ),
        pytest.param(
            ["url=http://h:9/x?a=b"], {"url": "http://h:9/x?a=b"}, id="only the first = splits"
        ),
        pytest.param(["note=2024-01-02"], {"note": "2024-01-02"}, id="a date stays text"),
        pytest.param(["name="], {"name": ""}, id="an empty value is empty text"),
        pytest.param(["limit=nan"], {"limit": "nan"}, id="not a number stays text"),
        pytest.param([], {}, id="no pairs"),
    ],
)
def test_option_pairs_become_typed_options(pairs: list[str], expected: dict[str, Any]) -> None:
    assert parse_option_pairs(pairs) == expected


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        pytest.param(["path"], "--option 'path': expected KEY=VALUE", id="no equals sign"),
        pytest.param(["=x"], "--option '=x': expected KEY=VALUE", id="no key"),
        pytest.param(["a=1", "a=2"], "--option a: given twice", id="a key twice"),
        pytest.param(["a=[1, 2"], "--option a: not a valid list or mapping", id="a broken list"),
    ],
)
def test_bad_option_pairs_are_refused(pairs: list[str], message: str) -> None:
    with pytest.raises(ValidationError, match="^" + message.replace("[", r"\[")):
        parse_option_pairs(pairs)


def test_flags_alone_make_a_version() -> None:
    request = version_request(
        None,
        model="iris",
        name="v4",
        flags={"backend": "onnx", "path": "iris-v4.onnx", "sha256": None, "url": None},
    )

    assert request == VersionRequest("iris", "v4", {"backend": "onnx", "path": "iris-v4.onnx"})


def test_a_file_with_model_and_version_needs_no_arguments() -> None:
    document = {"model": "iris", "version": "v4", **ONNX}

    request = version_request(document, source="version.yaml")

    assert request == VersionRequest("iris", "v4", ONNX)


def test_name_is_another_word_for_version() -> None:
    request = version_request({"model": "iris", "name": "v4", **ONNX}, source="v.yaml")

    assert (request.model, request.name, request.spec) == ("iris", "v4", ONNX)


def test_a_nested_spec_keeps_model_free_for_the_http_backend() -> None:
    document = {
        "model": "iris",
        "version": "up",
        "spec": {"backend": "http", "url": "http://127.0.0.1:9001", "model": "iris-upstream"},
    }

    request = version_request(document, source="v.yaml")

    assert request.model == "iris"
    assert request.spec == {
        "backend": "http",
        "url": "http://127.0.0.1:9001",
        "model": "iris-upstream",
    }


def test_arguments_that_agree_with_the_file_are_fine() -> None:
    request = version_request({"model": "iris", **ONNX}, source="v.yaml", model="iris", name="v4")

    assert (request.model, request.name) == ("iris", "v4")


def test_flags_and_options_win_over_the_file() -> None:
    request = version_request(
        dict(ONNX),
        source="v.yaml",
        model="iris",
        name="v4",
        flags={"sha256": "cd" * 32, "path": None},
        options={"intra_op_threads": 2},
    )

    assert request.spec == {**ONNX, "sha256": "cd" * 32, "intra_op_threads": 2}


@pytest.mark.parametrize(
    ("document", "arguments", "error", "message"),
    [
        pytest.param(
            ["backend", "onnx"], {}, ConfigError, "v.yaml: expected a mapping", id="a list"
        ),
        pytest.param(
            {"model": "other", **ONNX},
            {"model": "iris", "name": "v4"},
            ConfigError,
            "v.yaml: model 'other' in the file, but 'iris' on the command line",
            id="the file names another model",
        ),
        pytest.param(
            {"version": "v5", **ONNX},
            {"model": "iris", "name": "v4", "origin": "in the rollout spec"},
            ConfigError,
            "v.yaml: version 'v5' in the file, but 'v4' in the rollout spec",
            id="the file names another version than the rollout's candidate",
        ),
        pytest.param(
            ONNX,
            {"name": "v4"},
            ValidationError,
            "which model? Give it on the command line or as 'model:' in the file",
            id="no model anywhere",
        ),
        pytest.param(
            {"model": "iris", **ONNX},
            {},
            ValidationError,
            "which version?",
            id="no version anywhere",
        ),
        pytest.param(
            {"path": "x.onnx"},
            {"model": "iris", "name": "v4"},
            ConfigError,
            "v.yaml: the version needs a backend",
            id="no backend",
        ),
        pytest.param(
            {"version": "v4", "name": "v4", **ONNX},
            {"model": "iris"},
            ConfigError,
            "v.yaml: give the version's name once",
            id="version and name both",
        ),
        pytest.param(
            {"spec": ONNX, "path": "y.onnx"},
            {"model": "iris", "name": "v4"},
            ConfigError,
            "v.yaml: beside spec: only model: and version: may stand, not path",
            id="keys beside a nested spec",
        ),
        pytest.param(
            {"spec": "onnx"},
            {"model": "iris", "name": "v4"},
            ConfigError,
            "v.yaml: spec: must be a mapping",
            id="a nested spec that is no mapping",
        ),
        pytest.param(
            {"model": 3, **ONNX},
            {"name": "v4"},
            ConfigError,
            "v.yaml: model = 3: must be a name",
            id="a model that is no name",
        ),
        pytest.param(
            NUMBERED_KEY,
            {"model": "iris", "name": "v4"},
            ConfigError,
            "v.yaml: keys must be text, not 1",
            id="a key that is no text",
        ),
    ],
)
def test_a_bad_version_file_is_refused_naming_what_is_wrong(
    document: Any, arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        version_request(document, source="v.yaml", **arguments)

    assert str(raised.value).startswith(message), str(raised.value)


def test_a_flag_and_an_option_for_one_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="--option path and its own flag both given"):
        version_request(
            None,
            model="iris",
            name="v4",
            flags={"backend": "onnx", "path": "a.onnx"},
            options={"path": "b.onnx"},
        )
