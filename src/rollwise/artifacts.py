"""Where a version's artifact comes from, and pinning it to one content at registration.

A model version's artifact is a local file (``path``), a file to download (``url`` with
its ``sha256``, cached by content in ``artifact_cache_dir``), or a model in an MLflow
registry (the ``mlflow`` backend's ``uri``). ``pin`` runs once when a version is
registered: it turns a reference that can move (an MLflow alias) into the one it names
now, and says which artifact content the registration stands for, so that every replica
loads the same model and the fleet can tell when one loaded something else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollwise.backends.fetch import artifact_cache_dir, sha256_file
from rollwise.backends.options import FILE_KINDS, version_key
from rollwise.backends.registry import validate_backend_options
from rollwise.domain import VersionSpec

__all__ = ["Pinned", "artifact_cache_dir", "pin"]


@dataclass(frozen=True, slots=True)
class Pinned:
    """A version's options as every replica should load them, and what they stand for."""

    options: dict[str, Any]
    """The options to store and load: a moving reference replaced by where it points."""
    artifact_sha256: str = ""
    """The artifact's sha256 when known now (declared or computed); "" otherwise."""
    resolved: dict[str, Any] = field(default_factory=dict)
    """How a reference was resolved, e.g. ``{"uri": "models:/iris@challenger",
    "name": "iris", "alias": "challenger", "version": "3"}``; empty for plain files."""


def pin(spec: VersionSpec, *, base_dir: Path | None = None, model: str | None = None) -> Pinned:
    """Pin ``spec``'s artifact to what it names now. Blocking: call it off the event loop.

    - ``mlflow`` with ``models:/NAME@ALIAS``: asks the registry which version the alias
      names and returns ``uri: models:/NAME/VERSION``; a concrete version or a ``runs:/``
      URI is returned as it is. ``artifact_sha256`` is the declared ``sha256``, if any.
    - ``url`` artifacts: ``artifact_sha256`` is the declared (required) ``sha256``.
    - ``path`` artifacts: ``artifact_sha256`` is the file's sha256, read now (relative
      paths against ``base_dir``, default the working folder); when the file cannot be
      read here it is the declared ``sha256``, or "" (loading will say what is wrong).
    - other backends (http, python, fake) have no artifact: options unchanged, "".

    Raises ``ConfigError`` for bad options, or an MLflow model or alias that does not
    exist; ``BackendLoadError`` when the MLflow registry cannot be asked (or MLflow is not
    installed). ``model`` only names the version in error messages.
    """
    validate_backend_options(spec, model=model)
    options = dict(spec.options)
    declared = _declared_sha256(options)
    if spec.backend == "mlflow":
        from rollwise.backends.mlflow import pin_mlflow_options

        pinned, resolved = pin_mlflow_options(options, where=version_key(spec.name, model))
        return Pinned(pinned, declared, resolved)
    if spec.backend not in FILE_KINDS:
        return Pinned(options)
    if "url" in options:
        return Pinned(options, declared)
    path = Path(str(options["path"])).expanduser()
    if not path.is_absolute():
        path = (base_dir if base_dir is not None else Path()) / path
    try:
        return Pinned(options, sha256_file(path))
    except OSError:
        return Pinned(options, declared)


def _declared_sha256(options: Mapping[str, Any]) -> str:
    value = options.get("sha256")
    return value.strip().lower() if isinstance(value, str) else ""
