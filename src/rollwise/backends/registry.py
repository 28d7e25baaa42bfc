"""Building a backend from a configured version, and checking its options up front.

Backend modules are imported only when a version of their kind is built, so that
checking a config or starting the CLI does not pay for importing scikit-learn or
onnxruntime, and so that a kind whose extra dependencies are missing fails only for the
versions that use it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import cast, overload

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

__all__ = ["BACKEND_KINDS", "create_backend", "validate_backend_options"]


@overload
def validate_backend_options(spec: VersionSpec, /, *, model: str | None = None) -> None: ...


@overload
def validate_backend_options(model: str, spec: VersionSpec, /) -> None: ...


def validate_backend_options(
    first: VersionSpec | str, second: VersionSpec | None = None, /, *, model: str | None = None
) -> None:
    """Check a version's backend kind and options without loading anything.

    Call it as ``validate_backend_options(spec, model="iris")`` or
    ``validate_backend_options("iris", spec)``. Raises ``ConfigError`` naming
    ``models.<model>.versions.<version>.<key>`` (``versions.<version>.<key>`` when no
    model is given).
    """
    if isinstance(first, str):
        if second is None:
            raise TypeError("validate_backend_options(model, spec) needs the VersionSpec")
        model, spec = first, second
    else:
        spec = first
    where = version_key(spec.name, model)
    if spec.backend not in SCHEMAS:
        raise unknown_kind(spec.backend, where)
    check_options(spec.backend, spec.options, where)


def create_backend(
    spec: VersionSpec,
    base_dir: Path,
    *,
    model: str | None = None,
    executor: ModelExecutor | None = None,
) -> Backend:
    """A backend for ``spec``, not yet loaded; relative paths resolve against ``base_dir``.

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
    if kind == "http":
        # Looked up by name: the HTTP backend lives in its own module with its own
        # dependencies, and is not imported until a version uses it.
        module = importlib.import_module("rollwise.backends.http")
        return cast(Backend, module.HttpBackend(name, options, base_dir))
    raise AssertionError(f"kind {kind!r} is in SCHEMAS but has no constructor")
