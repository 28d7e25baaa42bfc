"""Models from a real MLflow model registry on SQLite: pinned, fetched, loaded safely.

One registry per module (creating its database takes seconds) holds:

- ``iris``: v1 a logistic regression and v2 a strongly regularised one (it predicts
  differently), both saved with skops;
  the alias ``challenger`` names v1;
- ``iris-onnx``: v1 the logistic regression as ONNX (skl2onnx, ``mlflow.onnx``);
- ``iris-pickle``: v1 the logistic regression as cloudpickle, which runs code on load.

MLflow is imported inside fixtures, while pytest marks the process as under test, so
that it sends no telemetry.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from rollwise.artifacts import pin
from rollwise.backends import Backend, InferenceRequest, Tensor, create_backend
from rollwise.backends.mlflow import MlflowBackend
from rollwise.domain import VersionSpec
from rollwise.errors import BackendLoadError, ConfigError

pytestmark = [
    pytest.mark.slow,
    # MLflow's own use of SQLAlchemy, not rollwise's.
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated"),
]

Matrix = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Registry:
    uri: str
    """The sqlite:/// URI of its tracking and registry store."""
    x: Matrix
    logistic: LogisticRegression
    weak: LogisticRegression
    files: dict[str, Path]
    """The model file of each registered version, as MLflow stored it, by ``name/version``."""
    onnx_run_id: str

    @property
    def options(self) -> dict[str, str]:
        return {"tracking_uri": self.uri, "registry_uri": self.uri}

    def sha256(self, key: str) -> str:
        return hashlib.sha256(self.files[key].read_bytes()).hexdigest()

    def set_alias(self, alias: str, version: str) -> None:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        client.set_registered_model_alias("iris", alias, version)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    pytest.importorskip("onnx", reason="logging an ONNX model needs the onnx package")
    import mlflow
    import mlflow.onnx
    import mlflow.sklearn
    from skl2onnx import to_onnx

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    x, y = load_iris(return_X_y=True)
    x = np.asarray(x, dtype=np.float64)
    logistic = LogisticRegression(max_iter=1000).fit(x, y)
    weak = LogisticRegression(C=0.001, max_iter=1000).fit(x, y)
    assert logistic.predict(x).tolist() != weak.predict(x).tolist()

    # Logging goes through MLflow's process-wide URIs; they are set only while logging,
    # and the backends under test are given theirs as options.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", uri)
        env.setenv("MLFLOW_REGISTRY_URI", uri)
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        experiment = client.create_experiment(
            "rollwise", artifact_location=(folder / "artifacts").as_uri()
        )
        # pip_requirements=[]: inferring them runs a subprocess and takes seconds.
        with mlflow.start_run(experiment_id=experiment):
            mlflow.sklearn.log_model(
                logistic,
                name="logistic",
                serialization_format="skops",
                registered_model_name="iris",
                pip_requirements=[],
            )
            mlflow.sklearn.log_model(
                weak,
                name="weak",
                serialization_format="skops",
                registered_model_name="iris",
                pip_requirements=[],
            )
            mlflow.sklearn.log_model(
                logistic,
                name="pickled",
                serialization_format="cloudpickle",
                registered_model_name="iris-pickle",
                pip_requirements=[],
            )
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.onnx.log_model(
                to_onnx(logistic, x[:1].astype(np.float32)),
                name="onnx-model",
                registered_model_name="iris-onnx",
                pip_requirements=[],
            )
        client.set_registered_model_alias("iris", "challenger", "1")

        files: dict[str, Path] = {}
        for name, version, file in [
            ("iris", "1", "model.skops"),
            ("iris", "2", "model.skops"),
            ("iris-onnx", "1", "model.onnx"),
            ("iris-pickle", "1", "model.pkl"),
        ]:
            location = client.get_model_version_download_uri(name, version)
            files[f"{name}/{version}"] = Path(url2pathname(urlsplit(location).path)) / file
            assert files[f"{name}/{version}"].is_file()
    yield Registry(uri, x, logistic, weak, files, run.info.run_id)


@pytest.fixture(autouse=True)
def _cache_beside_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROLLWISE_ARTIFACT_CACHE", raising=False)


def backend_for(options: dict[str, Any], base_dir: Path) -> Backend:
    return create_backend(VersionSpec("v2", "mlflow", options), base_dir, model="iris")


def loaded(backend: Backend) -> Backend:
    asyncio.run(backend.load())
    assert backend.ready()
    return backend


def labels(backend: Backend, matrix: Matrix) -> list[Any]:
    request = InferenceRequest(
        inputs=(Tensor("input-0", tuple(matrix.shape), "FP64", matrix.ravel().tolist()),)
    )

    async def go() -> list[Any]:
        response = await backend.predict(request)
        return list(response.outputs[0].data)

    return asyncio.run(go())


def load_error(backend: Backend) -> BackendLoadError:
    with pytest.raises(BackendLoadError) as caught:
        asyncio.run(backend.load())
    assert not backend.ready()
    return caught.value


# -- pinning --------------------------------------------------------------------------


def test_pin_resolves_an_alias_to_the_version_it_names_now(registry: Registry) -> None:
    options = {"uri": "models:/iris@challenger", **registry.options}
    pinned = pin(VersionSpec("v2", "mlflow", options))

    assert pinned.options == {**options, "uri": "models:/iris/1"}
    assert pinned.resolved == {
        "uri": "models:/iris@challenger",
        "name": "iris",
        "alias": "challenger",
        "version": "1",
    }
    assert pinned.artifact_sha256 == ""


def test_moving_the_alias_afterwards_does_not_change_what_the_pinned_spec_loads(
    registry: Registry, tmp_path: Path
) -> None:
    options = {"uri": "models:/iris@challenger", **registry.options}
    pinned = pin(VersionSpec("v2", "mlflow", options))
    registry.set_alias("challenger", "2")
    try:
        backend = loaded(backend_for(pinned.options, tmp_path))
        assert labels(backend, registry.x) == registry.logistic.predict(registry.x).tolist()
        assert backend.artifact_sha256 == registry.sha256("iris/1")

        # The alias itself now names the weak model: only the unpinned spec follows it.
        moving = loaded(backend_for(options, tmp_path))
        assert labels(moving, registry.x) == registry.weak.predict(registry.x).tolist()
        assert moving.artifact_sha256 == registry.sha256("iris/2")
        assert isinstance(moving, MlflowBackend)
        assert moving.resolved == {
            "uri": "models:/iris@challenger",
            "name": "iris",
            "version": "2",
            "alias": "challenger",
        }
    finally:
        registry.set_alias("challenger", "1")


def test_pinning_an_alias_that_does_not_exist_is_a_config_error(registry: Registry) -> None:
    spec = VersionSpec("v2", "mlflow", {"uri": "models:/iris@nobody", **registry.options})
    with pytest.raises(ConfigError, match=r"^models\.iris\.versions\.v2\.uri: models:/iris@nobody"):
        pin(spec, model="iris")


# -- loading --------------------------------------------------------------------------


def test_a_skops_model_loads_through_the_sklearn_backend_and_predicts_like_the_model(
    registry: Registry, tmp_path: Path
) -> None:
    backend = loaded(backend_for({"uri": "models:/iris/1", **registry.options}, tmp_path))

    assert isinstance(backend, Backend)
    assert labels(backend, registry.x) == registry.logistic.predict(registry.x).tolist()
    assert backend.artifact_sha256 == registry.sha256("iris/1")
    metadata = backend.metadata()
    assert metadata.platform == "sklearn"
    assert metadata.extra["loaded_by"] == "sklearn"
    assert metadata.extra["mlflow"] == {"uri": "models:/iris/1", "name": "iris", "version": "1"}
    cached = tmp_path / ".rollwise" / "artifacts" / "mlflow"
    assert [p.name for p in cached.rglob("model.skops")] == ["model.skops"]
    assert not [p for p in cached.iterdir() if p.name.startswith(".download-")]


def test_an_onnx_model_loads_through_the_onnx_backend(registry: Registry, tmp_path: Path) -> None:
    backend = loaded(backend_for({"uri": "models:/iris-onnx/1", **registry.options}, tmp_path))

    assert labels(backend, registry.x) == registry.logistic.predict(registry.x).tolist()
    assert backend.artifact_sha256 == registry.sha256("iris-onnx/1")
    assert backend.metadata().platform == "onnxruntime"


def test_a_model_logged_in_a_run_loads_from_its_runs_uri(
    registry: Registry, tmp_path: Path
) -> None:
    uri = f"runs:/{registry.onnx_run_id}/onnx-model"
    backend = loaded(backend_for({"uri": uri, **registry.options}, tmp_path))
    assert labels(backend, registry.x) == registry.logistic.predict(registry.x).tolist()
    assert backend.artifact_sha256 == registry.sha256("iris-onnx/1")


def test_mlflow_s_environment_names_the_registry_when_the_options_do_not(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", registry.uri)
    backend = loaded(backend_for({"uri": "models:/iris@challenger"}, tmp_path))
    assert labels(backend, registry.x) == registry.logistic.predict(registry.x).tolist()


def test_a_second_load_uses_the_cached_download(registry: Registry, tmp_path: Path) -> None:
    options = {"uri": "models:/iris/2", **registry.options}
    loaded(backend_for(options, tmp_path))
    cache = tmp_path / ".rollwise" / "artifacts" / "mlflow"
    (folder,) = cache.iterdir()
    (model_file,) = folder.rglob("model.skops")
    written = model_file.stat().st_mtime_ns

    again = loaded(backend_for(options, tmp_path))
    assert labels(again, registry.x) == registry.weak.predict(registry.x).tolist()
    assert [p.name for p in cache.iterdir()] == [folder.name]
    assert model_file.stat().st_mtime_ns == written


# -- what runs code on load -----------------------------------------------------------


def test_a_pickle_flavor_is_refused_without_trusted_and_sha256(
    registry: Registry, tmp_path: Path
) -> None:
    backend = backend_for({"uri": "models:/iris-pickle/1", **registry.options}, tmp_path)
    message = str(load_error(backend))
    # The sklearn backend's own rule, in its own words.
    assert "refusing to load pickle file model.pkl: pickle and joblib files can run" in message
    assert "trusted: true and sha256: <the file's SHA-256>" in message
    assert f"the file's sha256 is currently {registry.sha256('iris-pickle/1')}" in message

    trusted_only = {"uri": "models:/iris-pickle/1", "trusted": True, **registry.options}
    message = str(load_error(backend_for(trusted_only, tmp_path)))
    assert "needs sha256: <the file's SHA-256>" in message


def test_a_pickle_flavor_loads_with_trusted_and_its_sha256(
    registry: Registry, tmp_path: Path
) -> None:
    options = {
        "uri": "models:/iris-pickle/1",
        "trusted": True,
        "sha256": registry.sha256("iris-pickle/1"),
        **registry.options,
    }
    backend = loaded(backend_for(options, tmp_path))
    assert labels(backend, registry.x) == registry.logistic.predict(registry.x).tolist()
    assert backend.artifact_sha256 == registry.sha256("iris-pickle/1")

    wrong = {**options, "sha256": "0" * 64}
    message = str(load_error(backend_for(wrong, tmp_path)))
    assert f"is {registry.sha256('iris-pickle/1')}, but the config expects {'0' * 64}" in message


# -- what cannot load -----------------------------------------------------------------


def test_a_flavor_the_model_does_not_have_is_refused(registry: Registry, tmp_path: Path) -> None:
    options = {"uri": "models:/iris-onnx/1", "flavor": "sklearn", **registry.options}
    message = str(load_error(backend_for(options, tmp_path)))
    assert "models:/iris-onnx/1 has no flavor sklearn rollwise can load" in message
    assert "its flavors are onnx, python_function" in message


def test_a_version_that_does_not_exist_fails_to_load_with_the_reason(
    registry: Registry, tmp_path: Path
) -> None:
    error = load_error(backend_for({"uri": "models:/iris/99", **registry.options}, tmp_path))
    assert "cannot fetch models:/iris/99 from MLflow" in str(error)
    assert error.version == "v2"
    assert not list((tmp_path / ".rollwise" / "artifacts" / "mlflow").glob("*"))


def test_a_version_registered_through_the_api_is_pinned_once_and_records_its_artifact(
    registry: Registry, tmp_path: Path
) -> None:
    from support.gateway import GatewayProcess, eventually

    config = {
        "store": "sqlite:///state.db",
        "server": {"flush_interval_s": 0.2, "routing_poll_interval_s": 0.2},
        "models": {"m": {"stable": "a", "versions": {"a": {"backend": "fake"}}}},
    }
    gateway = GatewayProcess(tmp_path, config).start()
    spec = {"backend": "mlflow", "uri": "models:/iris@challenger", **registry.options}
    try:
        with gateway.client() as client:
            added = client.put("/api/v1/models/m/versions/ml", json=spec)
            assert added.status_code == 201, added.text
            version = added.json()["version"]
            assert version["options"]["uri"] == "models:/iris/1"
            assert version["requested"]["uri"] == "models:/iris@challenger"
            assert version["resolved"]["alias"] == "challenger"
            assert version["resolved"]["version"] == "1"

            def loaded() -> bool:
                shown = client.get("/api/v1/models/m/versions/ml").json()
                return bool(shown["fleet"]["everywhere"])

            eventually(loaded, timeout_s=60)
            shown = client.get("/api/v1/models/m/versions/ml").json()
            assert [r["artifact_sha256"] for r in shown["replicas"]] == [registry.sha256("iris/1")]
            # The alias moves on; the same spec registered again changes nothing.
            registry.set_alias("challenger", "2")
            again = client.put("/api/v1/models/m/versions/ml", json=spec)
            assert again.status_code == 200 and again.json()["created"] is False
            assert again.json()["version"]["options"]["uri"] == "models:/iris/1"
            events = client.get("/api/v1/events", params={"model": "m"}).json()["events"]
        registered = [e for e in events if e["kind"] == "version.registered"]
        assert len(registered) == 1
        assert registered[0]["data"]["resolved"]["version"] == "1"
    finally:
        registry.set_alias("challenger", "1")
        gateway.stop()
