"""The ``mlflow`` backend: a model from an MLflow model registry (or run), loaded safely.

The model's artifacts are downloaded through the MLflow client into the artifact cache,
``<cache>/mlflow/<key>/``, once per registered version (a version's artifacts never
change), into a temporary folder renamed into place only when complete. The model is
then loaded by the backend of a flavor that runs no code on load: the ``onnx`` flavor
by the onnx backend, a skops-serialised ``sklearn`` flavor (or a ``.skops`` file among
the artifacts) by the sklearn backend. A pickle or cloudpickle ``sklearn`` flavor goes
to the sklearn backend as a pickle, so it loads only with ``trusted: true`` and the
model file's ``sha256``: the sklearn backend's own rule, in its own words.

An alias (``models:/NAME@ALIAS``) is resolved to the version it names when the version
loads; ``rollwise.artifacts.pin`` resolves it once, when a version is registered, so
that every replica loads the same version however the alias moves afterwards.

MLflow is imported only here and only when needed: ``pip install rollwise[mlflow]``.

Options: ``uri`` (required: ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` or
``runs:/RUN_ID/PATH``), ``tracking_uri`` and ``registry_uri`` (default: MLflow's
``MLFLOW_TRACKING_URI`` and ``MLFLOW_REGISTRY_URI``; the registry defaults to the tracking
server), ``flavor`` (``onnx`` or ``sklearn``; default: ONNX when the model has it, else
skops, else pickle), and the options of the backend that loads the model: ``sha256``,
``trusted``, ``trusted_types``, ``probabilities``, ``intra_op_threads``,
``inter_op_threads``, ``timeout_s``, ``max_concurrency``.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from rollwise.backends.base import Backend, InferenceRequest, InferenceResponse, ModelMetadata
from rollwise.backends.executor import ModelExecutor
from rollwise.backends.fetch import artifact_cache_dir
from rollwise.backends.options import (
    SCHEMAS,
    MlflowUri,
    check_options,
    parse_mlflow_uri,
    version_key,
)
from rollwise.errors import BackendError, BackendLoadError, ConfigError, RollwiseError

__all__ = ["MlflowBackend", "import_mlflow", "pin_mlflow_options"]

INSTALL_HINT = "install rollwise[mlflow]"
_MARKER = ".rollwise-root"
"""Written last into a complete download: the model's folder (or file) inside it."""
# Options that only the mlflow backend reads, or that it sets for the backend it builds.
_OWN = frozenset({"uri", "tracking_uri", "registry_uri", "flavor"})
_SET = frozenset({"path", "url", "max_bytes", "download_timeout_s", "format"})
# MLflow's error codes for a name, version or alias that does not exist.
_NOT_FOUND = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"})


def import_mlflow(version: str | None = None) -> ModuleType:
    """The ``mlflow`` package, or ``BackendLoadError`` saying how to install it."""
    try:
        mlflow = importlib.import_module("mlflow")
        importlib.import_module("mlflow.artifacts")
    except ImportError as error:
        who = f"version {version!r}: " if version else ""
        raise BackendLoadError(
            f"{who}the mlflow backend needs MLflow, which is not installed here "
            f"({error}); {INSTALL_HINT}",
            version=version,
        ) from error
    return mlflow


def _mlflow_error() -> type[Exception]:
    """MLflow's exception class (MLflow is imported by then)."""
    found = getattr(importlib.import_module("mlflow.exceptions"), "MlflowException", None)
    return found if isinstance(found, type) and issubclass(found, Exception) else Exception


def _endpoints(options: Mapping[str, Any], mlflow: ModuleType) -> tuple[str, str]:
    """The tracking and registry URIs: the options, else MLflow's environment and defaults."""
    given_tracking = options.get("tracking_uri")
    tracking = str(given_tracking or mlflow.get_tracking_uri())
    registry = (
        options.get("registry_uri")
        or os.environ.get("MLFLOW_REGISTRY_URI")
        # MLflow's registry defaults to the tracking server the version names.
        or given_tracking
        or mlflow.get_registry_uri()
    )
    return tracking, str(registry)


def _client(options: Mapping[str, Any], mlflow: ModuleType) -> tuple[Any, str, str]:
    tracking, registry = _endpoints(options, mlflow)
    return mlflow.MlflowClient(tracking_uri=tracking, registry_uri=registry), tracking, registry


def _version_of_alias(client: Any, uri: MlflowUri) -> str:
    return str(client.get_model_version_by_alias(uri.name, uri.alias).version)


def pin_mlflow_options(
    options: Mapping[str, Any], *, where: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``options`` with an alias URI replaced by the version it names now, and how.

    Blocking for an alias (it asks the registry). Raises ``ConfigError`` when the
    registry has no such model or alias, ``BackendLoadError`` when it cannot be asked.
    """
    uri = str(options["uri"])
    parsed = parse_mlflow_uri(uri)
    if parsed is None:  # validated before; kept for a direct caller
        raise ConfigError(f"{where}.uri: not an MLflow model URI rollwise loads, got {uri!r}")
    pinned = dict(options)
    if parsed.form == "version":
        return pinned, {"uri": uri, "name": parsed.name, "version": parsed.version}
    if parsed.form == "run":
        return pinned, {"uri": uri, "run_id": parsed.run_id, "path": parsed.path}
    mlflow = import_mlflow()
    client, _, registry = _client(options, mlflow)
    try:
        version = _version_of_alias(client, parsed)
    except _mlflow_error() as error:
        if getattr(error, "error_code", "") in _NOT_FOUND:
            raise ConfigError(f"{where}.uri: {uri}: {_message(error)}") from None
        raise BackendLoadError(
            f"{where}.uri: cannot resolve {uri} at the MLflow registry {registry}: "
            f"{_message(error)}"
        ) from error
    pinned["uri"] = f"models:/{parsed.name}/{version}"
    resolved = {"uri": uri, "name": parsed.name, "alias": parsed.alias, "version": version}
    return pinned, resolved


def _message(error: Exception) -> str:
    return str(getattr(error, "message", "") or error)


class MlflowBackend:
    """A model version fetched from MLflow and served by the onnx or sklearn backend."""

    kind: str = "mlflow"

    def __init__(
        self,
        name: str,
        options: Mapping[str, Any],
        base_dir: Path,
        *,
        executor: ModelExecutor | None = None,
    ) -> None:
        self.name = name
        self.options: Mapping[str, Any] = dict(options)
        self.base_dir = Path(base_dir)
        self._executor = executor
        check_options(self.kind, self.options, version_key(name))
        parsed = parse_mlflow_uri(str(self.options["uri"]))
        assert parsed is not None  # check_options refused any other form
        self._uri = parsed
        self._inner: Backend | None = None
        self.artifact_sha256 = ""
        self.resolved: dict[str, Any] = {}
        """What the URI named when the model was fetched (name and version, or run)."""

    # -- the Backend contract ------------------------------------------------------------

    def ready(self) -> bool:
        inner = self._inner
        return inner is not None and inner.ready()

    async def load(self) -> None:
        if self._inner is not None:
            return
        try:
            # MLflow's client blocks; its downloads hold no model thread and no load lock.
            kind, options = await asyncio.to_thread(self._fetch)
        except RollwiseError as error:
            if isinstance(error, BackendError) and error.version is None:
                error.version = self.name
            raise
        except Exception as error:
            raise BackendLoadError(
                f"version {self.name!r} (mlflow) could not fetch {self._uri.uri}: "
                f"{type(error).__name__}: {error}",
                version=self.name,
            ) from error
        inner = self._build(kind, options)
        await inner.load()
        self._inner = inner
        self.artifact_sha256 = inner.artifact_sha256

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        inner = self._inner
        if inner is None:
            raise BackendError(f"version {self.name!r} is not loaded", version=self.name)
        return await inner.predict(request)

    async def close(self) -> None:
        inner, self._inner = self._inner, None
        if inner is not None:
            await inner.close()

    def metadata(self) -> ModelMetadata:
        inner = self._inner
        if inner is None:
            return ModelMetadata(platform="mlflow")
        found = inner.metadata()
        extra = {**found.extra, "mlflow": dict(self.resolved), "loaded_by": inner.kind}
        return replace(found, extra=extra)

    # -- fetching ------------------------------------------------------------------------

    def _fetch(self) -> tuple[str, dict[str, Any]]:
        """Download the artifacts (unless cached); the backend kind and options to load them."""
        mlflow = import_mlflow(self.name)
        client, tracking, registry = _client(self.options, mlflow)
        uri = self._uri
        artifacts = importlib.import_module("mlflow.artifacts")
        fetch: Callable[[Path], str]
        try:
            if uri.form == "run":
                key = f"{tracking}\nruns:/{uri.run_id}/{uri.path}"
                self.resolved = {"uri": uri.uri, "run_id": uri.run_id, "path": uri.path}

                def fetch(into: Path) -> str:
                    return _download_run(client, artifacts, tracking, uri, into)

            else:
                version = uri.version or _version_of_alias(client, uri)
                key = f"{registry}\nmodels:/{uri.name}/{version}"
                self.resolved = {"uri": uri.uri, "name": uri.name, "version": version}
                if uri.alias:
                    self.resolved["alias"] = uri.alias

                def fetch(into: Path) -> str:
                    # Through the version's own artifact location, so that the client's
                    # registry is used rather than MLflow's process-wide one.
                    source = client.get_model_version_download_uri(uri.name, version)
                    return str(
                        artifacts.download_artifacts(
                            artifact_uri=source,
                            dst_path=str(into),
                            tracking_uri=tracking,
                            registry_uri=registry,
                        )
                    )

            root = self._cached(key, fetch)
        except _mlflow_error() as error:
            raise BackendLoadError(
                f"version {self.name!r}: cannot fetch {uri.uri} from MLflow (tracking "
                f"{tracking}, registry {registry}): {_message(error)}",
                version=self.name,
            ) from error
        return self._choose(root)

    def _cached(self, key: str, fetch: Callable[[Path], str]) -> Path:
        """The local copy of one model's artifacts, downloaded by ``fetch`` if absent."""
        parent = artifact_cache_dir(self.base_dir).absolute() / "mlflow"
        folder = parent / hashlib.sha256(key.encode()).hexdigest()[:32]
        marker = folder / _MARKER
        if marker.is_file():
            return folder / marker.read_text(encoding="utf-8")
        parent.mkdir(parents=True, exist_ok=True)
        # Downloaded beside its final place and renamed when complete, so that a crash
        # or a concurrent load never leaves a half-downloaded model in the cache.
        temporary = Path(tempfile.mkdtemp(dir=parent, prefix=".download-"))
        try:
            local = Path(fetch(temporary))
            try:
                inside = local.resolve().relative_to(temporary.resolve())
            except ValueError:
                raise BackendLoadError(
                    f"version {self.name!r}: MLflow put {self._uri.uri} at {local}, outside "
                    f"the cache folder {temporary}",
                    version=self.name,
                ) from None
            (temporary / _MARKER).write_text(inside.as_posix(), encoding="utf-8")
            try:
                os.rename(temporary, folder)
            except OSError:
                # Another load of the same version finished first: use its copy.
                if not marker.is_file():
                    raise
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
        return folder / marker.read_text(encoding="utf-8")

    # -- choosing what loads it ----------------------------------------------------------

    def _choose(self, root: Path) -> tuple[str, dict[str, Any]]:
        """The backend kind (onnx or sklearn) for the model at ``root`` and its options."""
        wanted = self.options.get("flavor")
        if root.is_file():  # runs:/RUN/model.onnx: one file, no MLmodel
            return self._for_file(root, wanted)
        flavors = _flavors(root / "MLmodel")
        onnx = flavors.get("onnx")
        sklearn = flavors.get("sklearn")
        if wanted in (None, "onnx") and isinstance(onnx, Mapping) and onnx.get("data"):
            return "onnx", self._options_for("onnx", self._inside(root, onnx["data"]))
        pickled: Path | None = None
        if wanted in (None, "sklearn") and isinstance(sklearn, Mapping):
            model_file = sklearn.get("pickled_model")
            if model_file:
                path = self._inside(root, model_file)
                if sklearn.get("serialization_format") == "skops":
                    return "sklearn", self._options_for("sklearn", path, format="skops")
                pickled = path
        # No flavor rollwise loads without running code: a skops or ONNX file among the
        # artifacts will do, when there is exactly one.
        for kind, pattern in (("sklearn", "*.skops"), ("onnx", "*.onnx")):
            if wanted not in (None, kind):
                continue
            found = sorted(p for p in root.rglob(pattern) if p.is_file())
            if len(found) == 1:
                extra = {"format": "skops"} if kind == "sklearn" else {}
                return kind, self._options_for(kind, found[0], **extra)
        if pickled is not None:
            # The sklearn backend refuses it unless trusted: true and sha256 vouch for it.
            return "sklearn", self._options_for("sklearn", pickled, format="pickle")
        names = ", ".join(sorted(flavors)) or "none (no MLmodel file)"
        asked = f"flavor {wanted}" if wanted else "an onnx or sklearn flavor"
        raise BackendLoadError(
            f"version {self.name!r}: {self._uri.uri} has no {asked} rollwise can load; its "
            f"flavors are {names}. rollwise loads ONNX models, and scikit-learn models saved "
            "with skops (or as pickle, with trusted: true and sha256)",
            version=self.name,
        )

    def _for_file(self, path: Path, wanted: Any) -> tuple[str, dict[str, Any]]:
        suffix = path.suffix.lower()
        kind = "onnx" if suffix == ".onnx" else "sklearn"
        if wanted not in (None, kind):
            raise BackendLoadError(
                f"version {self.name!r}: {self._uri.uri} is the file {path.name}, which is "
                f"not a {wanted} model",
                version=self.name,
            )
        # The sklearn backend tells skops from pickle by the suffix, and refuses others.
        return kind, self._options_for(kind, path)

    def _inside(self, root: Path, relative: Any) -> Path:
        # The MLmodel file comes with the artifacts: its paths must stay among them.
        path = (root / str(relative)).resolve()
        if not path.is_relative_to(root.resolve()):
            raise BackendLoadError(
                f"version {self.name!r}: {self._uri.uri}'s MLmodel points outside its "
                f"artifacts ({relative!r}); refusing to load it",
                version=self.name,
            )
        return path

    def _options_for(self, kind: str, path: Path, **extra: Any) -> dict[str, Any]:
        known = SCHEMAS[kind].options
        passed = {
            key: value
            for key, value in self.options.items()
            if key in known and key not in _OWN and key not in _SET
        }
        return {**passed, "path": str(path), **extra}

    def _build(self, kind: str, options: Mapping[str, Any]) -> Backend:
        if kind == "onnx":
            from rollwise.backends.onnx import OnnxBackend

            return OnnxBackend(self.name, options, self.base_dir, executor=self._executor)
        from rollwise.backends.sklearn import SklearnBackend

        return SklearnBackend(self.name, options, self.base_dir, executor=self._executor)


def _flavors(mlmodel: Path) -> dict[str, Any]:
    """The ``flavors`` section of an MLmodel file; empty when there is none."""
    if not mlmodel.is_file():
        return {}
    try:
        document = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise BackendLoadError(f"cannot read {mlmodel}: {error}") from error
    flavors = document.get("flavors") if isinstance(document, Mapping) else None
    return {str(k): v for k, v in flavors.items()} if isinstance(flavors, Mapping) else {}


def _download_run(
    client: Any, artifacts: ModuleType, tracking: str, uri: MlflowUri, into: Path
) -> str:
    """Download ``runs:/RUN_ID/PATH``: a model logged in the run, or a run artifact."""
    # MLflow 3 keeps a model logged in a run as a "logged model" named by the first part
    # of the path; its own runs:/ lookup uses the process-wide tracking URI, so it is
    # looked up here with the version's client instead.
    first, _, rest = uri.path.partition("/")
    search = getattr(client, "search_logged_models", None)
    if search is not None and "'" not in first:
        experiment = client.get_run(uri.run_id).info.experiment_id
        for model in search(experiment_ids=[experiment], filter_string=f"name = '{first}'"):
            if getattr(model, "source_run_id", None) == uri.run_id:
                source = str(model.artifact_location).rstrip("/") + (f"/{rest}" if rest else "")
                target = into / first
                target.mkdir(parents=True, exist_ok=True)
                return str(
                    artifacts.download_artifacts(
                        artifact_uri=source, dst_path=str(target), tracking_uri=tracking
                    )
                )
    return str(client.download_artifacts(uri.run_id, uri.path, str(into)))
