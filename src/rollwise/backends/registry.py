"""Building a backend from a configured version, and checking its options up front.

Backend modules are imported only when a version of their kind is built, so that
checking a config or starting the CLI does not pay for importing scikit-learn or
onnxruntime, and so that a kind whose extra dependencies are missing fails only for the
versions that use it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

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
    if spec.backend == "openai":
        from rollwise.backends.openai import OpenAIBackend

        _build_checked(OpenAIBackend, spec, model)
    if spec.backend in ("http", "rest"):
        # The HTTP and REST backends check their address, timeout, paths and headers as
        # they are built; building one opens nothing, so a bad value is caught before
        # start-up.
        module = importlib.import_module(f"rollwise.backends.{spec.backend}")
        build = module.HttpBackend if spec.backend == "http" else module.RestBackend
        if _speaks_grpc(spec.backend, spec.options):
            build = _grpc_upstream(where)
        try:
            build(spec.name, spec.options, Path("."))
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
    if _speaks_grpc(kind, options):
        build = _grpc_upstream(version_key(name, model))
        return cast(Backend, build(name, options, base_dir))
    if kind == "http":
        # Looked up by name: the HTTP backend lives in its own module with its own
        # dependencies, and is not imported until a version uses it.
        module = importlib.import_module("rollwise.backends.http")
        return cast(Backend, module.HttpBackend(name, options, base_dir))
    if kind == "rest":
        module = importlib.import_module("rollwise.backends.rest")
        return cast(Backend, module.RestBackend(name, options, base_dir))
    if kind == "openai":
        from rollwise.backends.openai import OpenAIBackend

        return OpenAIBackend(name, options, base_dir)
    raise AssertionError(f"kind {kind!r} is in SCHEMAS but has no constructor")


def _build_checked(build: Any, spec: VersionSpec, model: str | None) -> None:
    """Build a backend only to check its options (building opens nothing)."""
    try:
        build(spec.name, spec.options, Path("."))
    except ConfigError as error:
        message = str(error)
        if model is not None and message.startswith("versions."):
            message = f"models.{model}.{message}"
        raise ConfigError(message) from None


def _speaks_grpc(kind: str, options: Mapping[str, Any]) -> bool:
    return kind == "http" and options.get("protocol") == "grpc"


def _grpc_upstream(where: str) -> Any:
    """The class of ``http`` versions with ``protocol: grpc``; ``ConfigError`` when
    grpcio is not installed (it comes with the ``grpc`` extra)."""
    from rollwise.grpc_v2 import require_grpc

    require_grpc(f"{where}.protocol: grpc")
    return importlib.import_module("rollwise.backends.grpc_upstream").GrpcUpstreamBackend
