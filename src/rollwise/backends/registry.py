"""Building a backend from a configured version, and checking its options up front.

Backend modules are imported only when a version of their kind is built, so that
checking a config or starting the CLI does not pay for importing scikit-learn or
onnxruntime, and so that a kind whose extra dependencies are missing fails only for the
versions that use it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import cast

from rollwise.backends.base import Backend
from rollwise.backends.executor import ModelExecutor
from rollwise.backends.options import (
    BACKEND_KINDS,
    SCHEMAS,
    check_options,
    unknown_kind,
    version_key,
)
from rollwise.domain import VersionSpec
from rollwise.errors import ConfigError

__all__ = ["BACKEND_KINDS", "create_backend", "validate_backend_options"]


def validate_backend_options(spec: VersionSpec, /, *, model: str | None = None) -> None:
    """Check a version's backend kind and options without loading anything.

    Raises ``ConfigError`` naming ``models.<model>.versions.<version>.<key>``
    (``versions.<version>.<key>`` when no model is given).
    """
    where = version_key(spec.name, model)
    if spec.backend not in SCHEMAS:
        raise unknown_kind(spec.backend, where)
    check_options(spec.backend, spec.options, where)
    if spec.backend == "http":
        # The HTTP backend checks its address, timeout and headers as it is built;
        # building it opens nothing, so a bad value is caught before start-up.
        from rollwise.backends.http import HttpBackend

        try:
            HttpBackend(spec.name, spec.options, Path("."))
        except ConfigError as error:
            message = str(error)
            if model is not None and message.startswith("versions."):
                message = f"models.{model}.{message}"
            raise ConfigError(message) from None


def create_backend(
    spec: VersionSpec,
    base_dir: Path,
    *,
    model: str | None = None,
    executor: ModelExecutor | None = None,
) -> Backend:
    """A backend for ``spec``, not yet loaded; relative paths resolve against ``base_dir``.

    Downloaded artifacts (``url``, ``mlflow``) are cached in ``artifact_cache_dir(base_dir)``.

    ``executor`` is the thread pool for in-process models (the process-wide one when
    ``None``).
    """
    validate_backend_options(spec, model=model)
    name, options, kind = spec.name, spec.options, spec.backend
    if kind == "sklearn":
        from rollwise.backends.sklearn import SklearnBackend

        return SklearnBackend(name, options, base_dir, executor=executor)
    if kind == "onnx":
        from rollwise.backends.onnx import OnnxBackend

        return OnnxBackend(name, options, base_dir, executor=executor)
    if kind == "python":
        from rollwise.backends.python import PythonBackend

        return PythonBackend(name, options, base_dir, executor=executor)
    if kind == "fake":
        from rollwise.backends.fake import FakeBackend

        return FakeBackend(name, options, base_dir, executor=executor)
    if kind == "mlflow":
        # MLflow itself is imported only when the version loads.
        from rollwise.backends.mlflow import MlflowBackend

        return MlflowBackend(name, options, base_dir, executor=executor)
    if kind == "http":
        # Looked up by name: the HTTP backend lives in its own module with its own
        # dependencies, and is not imported until a version uses it.
        module = importlib.import_module("rollwise.backends.http")
        return cast(Backend, module.HttpBackend(name, options, base_dir))
    raise AssertionError(f"kind {kind!r} is in SCHEMAS but has no constructor")
