"""What the control API may register: the trust policy of the ``registration:`` config key.

A version registered through the API is loaded by every gateway replica, so whoever
holds an operator token could otherwise make the whole fleet run code or read files of
their choosing. The config decides what is allowed: which backends, which folders model
files may come from, which URLs artifacts and upstream servers may live at, and whether
pickle files (``trusted: true``) may be loaded at all. Every refusal names the rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rollwise.domain import VersionSpec
from rollwise.errors import ConfigError, Forbidden
from rollwise.secrets_env import check_spec_env_name

__all__ = [
    "DEFAULT_BACKENDS",
    "KNOWN_BACKENDS",
    "RegistrationPolicy",
    "RegistrationSection",
    "check_registration",
]

DEFAULT_BACKENDS: tuple[str, ...] = ("sklearn", "onnx", "http", "rest", "mlflow", "fake")
"""Every backend but ``python``, which imports and runs code named in the request, and
``openai``, whose ``api_key_env`` names an environment variable of the gateway's."""

KNOWN_BACKENDS: tuple[str, ...] = (
    "sklearn",
    "onnx",
    "python",
    "http",
    "rest",
    "openai",
    "mlflow",
    "fake",
)
"""The backend kinds a config may name here. Listed rather than imported from
``rollwise.backends``: the config module imports this one, and checking a config must not
import the backends (a test keeps the two lists in step)."""
_PATH_OPTIONS = ("path", "python_path", "ca_file")
"""Options that name files or folders on the replicas' disks."""
_MLFLOW_SCHEMES = ("models:/", "runs:/")
_WEB_SCHEMES = ("http", "https")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class RegistrationSection(BaseModel):
    """The ``registration:`` key of the config file."""

    # The same strictness as the config's other sections (config._Strict), declared here
    # because the config module imports this one.
    model_config = ConfigDict(extra="forbid", frozen=True)

    backends: list[str] = Field(default_factory=lambda: list(DEFAULT_BACKENDS))
    """Backend kinds the API may register."""
    artifact_dirs: list[str] = Field(default_factory=list)
    """Folders model files may come from, relative to the config's folder; empty: only
    the config's own folder (and below)."""
    url_prefixes: list[str] = Field(default_factory=list)
    """URLs artifacts and upstream servers may live under; empty: any http(s) URL, but an
    artifact only with its sha256."""
    allow_trusted: bool = False
    """Whether pickle files (``trusted: true``) and extra skops ``trusted_types`` may be
    registered: both can run code when the model is loaded."""

    @field_validator("backends")
    @classmethod
    def _check_backends(cls, value: list[str]) -> list[str]:
        unknown = [kind for kind in value if kind not in KNOWN_BACKENDS]
        if unknown:
            raise ValueError(
                f"unknown backend {unknown[0]!r}; valid kinds are {', '.join(KNOWN_BACKENDS)}"
            )
        return value

    @field_validator("artifact_dirs")
    @classmethod
    def _check_dirs(cls, value: list[str]) -> list[str]:
        if not all(folder.strip() for folder in value):
            raise ValueError("folders must be non-empty paths")
        return value

    @field_validator("url_prefixes")
    @classmethod
    def _check_prefixes(cls, value: list[str]) -> list[str]:
        for prefix in value:
            parts = urlsplit(prefix)
            if not parts.scheme or not parts.netloc:
                raise ValueError(
                    f"{prefix!r} must be a URL with a scheme and a host, "
                    "e.g. https://models.example.com/iris/"
                )
        return value


@dataclass(frozen=True, slots=True)
class RegistrationPolicy:
    """The registration rules with every folder resolved, ready to check specs against."""

    base_dir: Path
    """The config's folder: relative model paths resolve against it, as replicas do."""
    backends: tuple[str, ...] = DEFAULT_BACKENDS
    artifact_dirs: tuple[Path, ...] = ()
    """Resolved folders model files may come from; empty: ``base_dir`` and below."""
    url_prefixes: tuple[str, ...] = ()
    allow_trusted: bool = False

    @classmethod
    def from_section(cls, section: RegistrationSection, base_dir: Path) -> RegistrationPolicy:
        base = Path(base_dir).resolve()
        return cls(
            base_dir=base,
            backends=tuple(section.backends),
            artifact_dirs=tuple(_resolve(folder, base) for folder in section.artifact_dirs),
            url_prefixes=tuple(section.url_prefixes),
            allow_trusted=section.allow_trusted,
        )


def check_registration(model: str, spec: VersionSpec, policy: RegistrationPolicy) -> None:
    """Raise :class:`Forbidden` naming the rule when ``policy`` does not allow ``spec``.

    ``model`` is the model the version is registered for (the rules are the same for
    every model today). The options' types are the backend's to check; here anything
    that is not what a rule expects is refused.
    """
    options: Mapping[str, Any] = spec.options
    _check_backend(spec.backend, policy)
    _check_trust(options, policy)
    for key in _PATH_OPTIONS:
        if key in options:
            _check_paths(key, options[key], policy)
    if "url" in options:
        # The http, rest and openai backends' url is the upstream server they send
        # requests to; on the other backends it is where the artifact is downloaded from.
        upstream = spec.backend in ("http", "rest", "openai")
        _check_url(options["url"], policy, artifact=not upstream, options=options)
    if spec.backend == "mlflow":
        _check_mlflow_uri(options.get("uri"))
    if "api_key_env" in options:
        # Named through the API, a variable could be any of the gateway's secrets
        # (ROLLWISE_TOKENS, a cloud key), sent to the url the same request names.
        try:
            check_spec_env_name(str(options["api_key_env"]), "api_key_env")
        except ConfigError as error:
            raise _refuse("backends", str(error)) from None


def _refuse(rule: str, why: str) -> Forbidden:
    return Forbidden(f"registration refused by registration.{rule}: {why}")


def _check_backend(backend: str, policy: RegistrationPolicy) -> None:
    if backend not in policy.backends:
        allowed = ", ".join(policy.backends) or "none"
        raise _refuse("backends", f"backend {backend!r} is not allowed (allowed: {allowed})")


def _check_trust(options: Mapping[str, Any], policy: RegistrationPolicy) -> None:
    if policy.allow_trusted:
        return
    if options.get("trusted") is True:
        raise _refuse(
            "allow_trusted",
            "trusted: true (a pickle file, which runs code when loaded) is not allowed; "
            "register a skops or ONNX file",
        )
    if options.get("trusted_types"):
        # Types skops does not trust by itself are reconstructed by importing them:
        # naming one can run code at load as surely as a pickle.
        raise _refuse(
            "allow_trusted",
            "trusted_types (types skops does not trust by itself) are not allowed; "
            "register a model skops trusts, or an ONNX file",
        )


def _resolve(raw: str, base: Path) -> Path:
    # Resolved as the backends resolve model paths, then with symlinks and ".." taken
    # out, so that only the real location is judged.
    path = Path(raw).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _check_paths(key: str, value: object, policy: RegistrationPolicy) -> None:
    raws: Iterable[object] = value if isinstance(value, list) else [value]
    allowed = policy.artifact_dirs or (policy.base_dir.resolve(),)
    folders = ", ".join(str(folder) for folder in allowed)
    for raw in raws:
        if not isinstance(raw, str) or not raw.strip() or "\x00" in raw:
            raise _refuse("artifact_dirs", f"{key} {raw!r} is not a path")
        real = _resolve(raw, policy.base_dir)
        if not any(real.is_relative_to(folder) for folder in allowed):
            shown = repr(raw) if str(real) == raw else f"{raw!r} ({real})"
            raise _refuse(
                "artifact_dirs", f"{key} {shown} is outside the allowed folders ({folders})"
            )


def _has_dot_segment(parts: SplitResult) -> bool:
    # A server may resolve "/models/../secret" (or its percent-encoded or backslashed
    # forms) to a path outside the prefix the URL seems to be under.
    path = unquote(parts.path).replace("\\", "/")
    return any(segment in (".", "..") for segment in path.split("/"))


def _under_prefix(url: SplitResult, prefix: str) -> bool:
    # Compared part by part, not as strings: "https://models.example.com" must not let
    # through "https://models.example.com.evil.org/" or "https://models.example.com@evil/".
    allowed = urlsplit(prefix)
    if (url.scheme.lower(), url.netloc.lower()) != (
        allowed.scheme.lower(),
        allowed.netloc.lower(),
    ):
        return False
    base = allowed.path if allowed.path.endswith("/") else allowed.path + "/"
    path = url.path if url.path.endswith("/") else url.path + "/"
    return path.startswith(base)


def _check_url(
    value: object, policy: RegistrationPolicy, *, artifact: bool, options: Mapping[str, Any]
) -> None:
    if not isinstance(value, str) or not value.strip():
        raise _refuse("url_prefixes", f"url {value!r} is not a URL")
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        raise _refuse("url_prefixes", f"url {value!r} is not a URL") from None
    if _has_dot_segment(parts):
        raise _refuse("url_prefixes", f"url {value!r} has '.' or '..' in its path")
    if policy.url_prefixes:
        if not any(_under_prefix(parts, prefix) for prefix in policy.url_prefixes):
            allowed = ", ".join(policy.url_prefixes)
            raise _refuse(
                "url_prefixes", f"url {value!r} is not under an allowed prefix ({allowed})"
            )
    elif parts.scheme.lower() not in _WEB_SCHEMES or not parts.netloc:
        # With no prefixes any web address goes, but not file:// and the like, which
        # would read the replicas' disks around registration.artifact_dirs.
        raise _refuse(
            "url_prefixes",
            f"url {value!r} is not an http(s) URL (list other prefixes in "
            "registration.url_prefixes to allow them)",
        )
    if artifact:
        sha256 = options.get("sha256")
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256.strip()):
            raise _refuse(
                "url_prefixes",
                f"url {value!r} needs a sha256 (64 hexadecimal digits) of the artifact, "
                "so that every replica loads the same bytes",
            )


def _check_mlflow_uri(value: object) -> None:
    if not isinstance(value, str) or not value.startswith(_MLFLOW_SCHEMES):
        # A path or a URL here would bypass registration.artifact_dirs and url_prefixes.
        raise _refuse(
            "backends",
            f"backend 'mlflow' takes a uri starting with {' or '.join(_MLFLOW_SCHEMES)}, "
            f"got {value!r}",
        )
