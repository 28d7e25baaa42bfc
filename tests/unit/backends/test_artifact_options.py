"""Artifact options (path, url + sha256, MLflow URIs) are checked before anything is fetched."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from rollwise.artifacts import Pinned, artifact_cache_dir, pin
from rollwise.backends import validate_backend_options
from rollwise.backends.fetch import DEFAULT_MAX_BYTES, cached_path, url_filename
from rollwise.backends.mlflow import import_mlflow
from rollwise.backends.options import MlflowUri, parse_mlflow_uri
from rollwise.domain import VersionSpec
from rollwise.errors import BackendLoadError, ConfigError

SHA = "ab" * 32
KEY = "models.iris.versions.v1"


def check(kind: str, options: dict[str, Any]) -> None:
    validate_backend_options(VersionSpec("v1", kind, options), model="iris")


def refusal(kind: str, options: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        check(kind, options)
    return str(caught.value)


# -- url artifacts --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        pytest.param(
            "sklearn", {"url": "https://models.test/iris.skops", "sha256": SHA}, id="https"
        ),
        pytest.param("onnx", {"url": "http://127.0.0.1:8000/m.onnx", "sha256": SHA}, id="http"),
        pytest.param("onnx", {"url": "file:///srv/m.onnx", "sha256": SHA.upper()}, id="file"),
        pytest.param(
            "sklearn",
            {
                "url": "https://models.test/m.joblib",
                "sha256": SHA,
                "trusted": True,
                "max_bytes": 1024,
                "download_timeout_s": 5,
            },
            id="bounded trusted pickle",
        ),
    ],
)
def test_a_url_with_its_sha256_takes_the_place_of_path(kind: str, options: dict[str, Any]) -> None:
    check(kind, options)


@pytest.mark.parametrize("kind", ["sklearn", "onnx"])
def test_a_url_without_sha256_is_refused(kind: str) -> None:
    message = refusal(kind, {"url": "https://models.test/m.onnx"})
    assert message.startswith(f"{KEY}.url: url artifacts need sha256: ")
    assert "https://models.test/m.onnx" in message


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param(
            {"url": "https://h/m.onnx", "sha256": "abc"},
            f"{KEY}.sha256: must be 64 hexadecimal digits",
            id="short sha256",
        ),
        pytest.param(
            {"url": "https://h/m.onnx", "sha256": "g" * 64},
            f"{KEY}.sha256: must be 64 hexadecimal digits",
            id="sha256 not hex",
        ),
        pytest.param(
            {"url": "ftp://h/m.onnx", "sha256": SHA},
            f"{KEY}.url: must be an https://, http:// or file:// URL",
            id="ftp url",
        ),
        pytest.param(
            {"url": "models/m.onnx", "sha256": SHA},
            f"{KEY}.url: must be an https://, http:// or file:// URL",
            id="a path given as url",
        ),
        pytest.param(
            {"url": "https:///m.onnx", "sha256": SHA}, f"{KEY}.url: must name a host", id="no host"
        ),
        pytest.param(
            {"url": "https://h/", "sha256": SHA}, f"{KEY}.url: must name a file", id="no file"
        ),
        pytest.param(
            {"url": "file://otherhost/m.onnx", "sha256": SHA},
            f"{KEY}.url: must be a local file:// URL",
            id="remote file url",
        ),
        pytest.param(
            {"url": "https://h/m.onnx", "path": "m.onnx", "sha256": SHA},
            f"{KEY}.url: cannot be combined with path",
            id="url and path",
        ),
        pytest.param(
            {"path": "m.onnx", "max_bytes": 10},
            f"{KEY}.max_bytes: only used with url",
            id="max_bytes without url",
        ),
        pytest.param(
            {"url": "https://h/m.onnx", "sha256": SHA, "max_bytes": 0},
            f"{KEY}.max_bytes: must be at least 1",
            id="zero max_bytes",
        ),
        pytest.param(
            {"url": "https://h/m.onnx", "sha256": SHA, "download_timeout_s": 0},
            f"{KEY}.download_timeout_s: must be at least 0.001",
            id="zero download timeout",
        ),
    ],
)
def test_a_bad_url_artifact_is_named_with_its_key(options: dict[str, Any], expected: str) -> None:
    assert refusal("onnx", options).startswith(expected)


def test_without_path_or_url_path_is_still_the_option_asked_for() -> None:
    assert refusal("sklearn", {}) == f"{KEY}.path: required for backend 'sklearn'"


def test_the_http_backend_keeps_url_for_its_upstream_server() -> None:
    check("http", {"url": "http://127.0.0.1:9001", "model": "iris"})


def test_the_default_download_bound_is_two_gibibytes() -> None:
    assert DEFAULT_MAX_BYTES == 2 * 1024**3


@pytest.mark.parametrize(
    ("url", "name"),
    [
        pytest.param("https://h/models/iris-v2.onnx", "iris-v2.onnx", id="plain"),
        pytest.param("https://h/a/model%20v1.skops?sig=x#f", "model_v1.skops", id="quoted"),
        pytest.param("https://h/a/..%2F..%2Fescape.skops", "escape.skops", id="climbing"),
        pytest.param("https://h/.hidden.onnx", "hidden.onnx", id="hidden"),
        pytest.param("https://h/..", "artifact", id="nothing left"),
    ],
)
def test_a_cached_file_keeps_the_url_s_file_name_and_nothing_dangerous(url: str, name: str) -> None:
    assert url_filename(url) == name


def test_the_cache_is_addressed_by_sha256(tmp_path: Path) -> None:
    path = cached_path(tmp_path, SHA.upper(), "https://h/x/m.onnx")
    assert path == tmp_path / SHA / "m.onnx"


def test_the_cache_folder_is_beside_the_config_unless_the_environment_names_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("ROLLWISE_ARTIFACT_CACHE", raising=False)
    assert artifact_cache_dir(Path("conf")) == Path("conf/.rollwise/artifacts")
    monkeypatch.setenv("ROLLWISE_ARTIFACT_CACHE", str(tmp_path / "cache"))
    assert artifact_cache_dir(Path("conf")) == tmp_path / "cache"


# -- MLflow URIs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        pytest.param(
            "models:/iris/3",
            MlflowUri("models:/iris/3", "version", name="iris", version="3"),
            id="version",
        ),
        pytest.param(
            "models:/iris classifier@challenger",
            MlflowUri(
                "models:/iris classifier@challenger",
                "alias",
                name="iris classifier",
                alias="challenger",
            ),
            id="alias",
        ),
        pytest.param(
            "runs:/0a1b2c/model",
            MlflowUri("runs:/0a1b2c/model", "run", run_id="0a1b2c", path="model"),
            id="run",
        ),
        pytest.param(
            "runs:/0a1b2c/models/iris.onnx",
            MlflowUri(
                "runs:/0a1b2c/models/iris.onnx", "run", run_id="0a1b2c", path="models/iris.onnx"
            ),
            id="file in a run",
        ),
    ],
)
def test_an_mlflow_uri_is_taken_apart(uri: str, parsed: MlflowUri) -> None:
    assert parse_mlflow_uri(uri) == parsed
    check("mlflow", {"uri": uri})


@pytest.mark.parametrize(
    ("uri", "hint"),
    [
        pytest.param("models:/iris", "", id="no version"),
        pytest.param("models:/iris/0", "", id="version zero"),
        pytest.param("models:/iris/latest", "use an alias", id="latest moves"),
        pytest.param("models:/iris/Production", "use an alias", id="stage moves"),
        pytest.param("models:/iris@", "", id="empty alias"),
        pytest.param("runs:/abc", "", id="run without path"),
        pytest.param("s3://bucket/model", "", id="a storage url"),
        pytest.param("iris/3", "", id="no scheme"),
    ],
)
def test_an_mlflow_uri_of_another_form_is_refused(uri: str, hint: str) -> None:
    message = refusal("mlflow", {"uri": uri})
    assert message.startswith(
        f"{KEY}.uri: must be models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/PATH"
    )
    assert hint in message
    assert repr(uri) in message


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({}, f"{KEY}.uri: required for backend 'mlflow'", id="no uri"),
        pytest.param(
            {"uri": "models:/iris/1", "flavor": "pytorch"},
            f"{KEY}.flavor: must be one of onnx, sklearn",
            id="unknown flavor",
        ),
        pytest.param(
            {"uri": "models:/iris/1", "path": "m.onnx"},
            f"{KEY}.path: unknown option for backend 'mlflow'",
            id="path",
        ),
        pytest.param(
            {"uri": "models:/iris/1", "sha256": "x"},
            f"{KEY}.sha256: must be 64 hexadecimal digits",
            id="bad sha256",
        ),
        pytest.param(
            {"uri": "models:/iris/1", "trusted": "yes"},
            f"{KEY}.trusted: must be true or false",
            id="trusted not a bool",
        ),
    ],
)
def test_bad_mlflow_options_are_named_with_their_key(
    options: dict[str, Any], expected: str
) -> None:
    assert refusal("mlflow", options).startswith(expected)


def test_mlflow_takes_the_options_of_the_backends_it_loads_through() -> None:
    check(
        "mlflow",
        {
            "uri": "models:/iris@champion",
            "tracking_uri": "http://127.0.0.1:5000",
            "registry_uri": "sqlite:///registry.db",
            "flavor": "sklearn",
            "trusted": True,
            "sha256": SHA,
            "trusted_types": ["x.Y"],
            "probabilities": False,
            "intra_op_threads": 2,
            "inter_op_threads": 1,
            "timeout_s": 3,
            "max_concurrency": 2,
        },
    )


def test_without_mlflow_installed_loading_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None in sys.modules makes `import mlflow` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(BackendLoadError, match=r"install rollwise\[mlflow\]") as caught:
        import_mlflow("v1")
    assert caught.value.version == "v1"


# -- pinning without I/O --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        pytest.param("http", {"url": "http://127.0.0.1:9001"}, id="http"),
        pytest.param("python", {"target": "pkg.mod:predict"}, id="python"),
        pytest.param("fake", {"label": 1}, id="fake"),
    ],
)
def test_pinning_a_backend_without_artifact_changes_nothing(
    kind: str, options: dict[str, Any]
) -> None:
    assert pin(VersionSpec("v1", kind, options)) == Pinned(options, "", {})


def test_pinning_a_url_artifact_records_its_declared_sha256() -> None:
    options = {"url": "https://h/m.onnx", "sha256": SHA.upper()}
    assert pin(VersionSpec("v1", "onnx", options)) == Pinned(options, SHA, {})


def test_pinning_a_concrete_mlflow_version_asks_no_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # any registry call would fail
    options = {"uri": "models:/iris/4", "sha256": SHA}
    pinned = pin(VersionSpec("v1", "mlflow", options))
    assert pinned == Pinned(options, SHA, {"uri": "models:/iris/4", "name": "iris", "version": "4"})


def test_pinning_a_run_uri_keeps_it() -> None:
    options = {"uri": "runs:/0a1b/model"}
    pinned = pin(VersionSpec("v1", "mlflow", options))
    assert pinned.options == options
    assert pinned.resolved == {"uri": "runs:/0a1b/model", "run_id": "0a1b", "path": "model"}


def test_pinning_checks_the_options_first() -> None:
    with pytest.raises(ConfigError, match=r"^models\.iris\.versions\.v1\.url: url artifacts"):
        pin(VersionSpec("v1", "onnx", {"url": "https://h/m.onnx"}), model="iris")
