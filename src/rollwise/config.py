"""The gateway config file (YAML or TOML), parsed and checked once at start-up.

Every refusal names the key and the value that was wrong, e.g.
``rollwise.yaml: models.iris.stable = 'v9': not one of the versions (v1, v2)``.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from rollwise.analysis.comparators import ComparatorSpec, parse_comparator
from rollwise.domain import ModelSpec, StickyKey, StickyKind, VersionSpec
from rollwise.errors import ConfigError
from rollwise.metrics.scoring import MAX_LABEL_CHARS
from rollwise.notifications.settings import NotificationSection, resolve_targets
from rollwise.notifications.targets import Target
from rollwise.providers.settings import ProvidersSection
from rollwise.registration import RegistrationSection
from rollwise.tracing.settings import TracingSection

ROLES = ("viewer", "operator", "feedback")
"""Token roles: ``viewer`` reads the control API, ``operator`` also changes things,
``feedback`` may only post ground truth (a labelling pipeline needs nothing more)."""
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_CONTROL_BODY_BYTES = 1024 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSection(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024)
    max_control_body_bytes: int = Field(DEFAULT_MAX_CONTROL_BODY_BYTES, ge=1024)
    """Control API bodies (rollout specs, versions, routing) at most; larger get 413."""
    mirror_concurrency: int = Field(64, ge=1, le=100_000)
    shadow_process: Literal["auto", "on", "off"] = "auto"
    """Where the model code of in-process shadow versions (sklearn, onnx, python) runs:
    ``on``, in a child process that loads them a second time, so that a mirrored
    request never holds the interpreter a served request needs;
    ``off``, in a thread pool of the gateway's own process (less memory, and the
    served latency pays for the shadow's CPU); ``auto``, on when the machine has more
    than one CPU."""
    flush_interval_s: float = Field(1.0, gt=0, le=60)
    routing_poll_interval_s: float = Field(1.0, gt=0, le=60)
    prediction_retention_s: float = Field(7 * 86400.0, gt=0)
    prediction_cache_size: int = Field(100_000, ge=0)
    metrics_retention_s: float = Field(30 * 86400.0, gt=0)
    predict_threads: int = Field(0, ge=0, le=256)
    heartbeat_interval_s: float = Field(1.0, gt=0, le=60)
    """How often this replica tells the fleet it lives and how its versions are."""
    heartbeat_timeout_s: float = Field(10.0, gt=0, le=3600)
    """A replica not heard from for this long counts as gone: rollouts stop waiting
    for it."""
    body_timeout_s: float = Field(30.0, gt=0, le=3600)
    """Built-in server: how long one request's headers and body may take to arrive;
    a client slower than that gets 408 and its connection is closed."""
    max_connections: int = Field(1000, ge=1, le=1_000_000)
    """Built-in server: open client connections at most; one more gets 503 and is closed."""
    drain_timeout_s: float = Field(30.0, gt=0, le=3600)
    """Built-in server: how long a client may leave its answers unread (the connection's
    write buffer over its high-water mark) before the connection is closed."""
    shutdown_timeout_s: float = Field(30.0, ge=0, le=3600)
    """On SIGTERM or SIGINT, how long the requests in flight may take to finish before
    their connections are closed (built-in server); a second signal stops at once."""
    max_pipelined: int = Field(64, ge=1, le=10_000)
    """Built-in server: requests read ahead of the one being answered, per connection."""
    workers: int | Literal["auto"] = 1
    """Worker processes of ``rollwise serve`` on one port (``auto``: one per CPU); each
    is a replica of the fleet. ``--workers`` overrides it."""
    grpc_port: StrictInt | None = Field(None, ge=1, le=65535)
    """Where the Open Inference Protocol is also served over gRPC (KServe's and Triton's
    ``inference.GRPCInferenceService``), on ``host``; None: no gRPC port. Needs the
    ``grpc`` extra (``pip install 'rollwise[grpc]'``)."""

    @field_validator("workers", mode="before")
    @classmethod
    def _check_workers(cls, value: object) -> object:
        # One plain message instead of one per branch of the union.
        if value == "auto" or (type(value) is int and 1 <= value <= 256):
            return value
        raise ValueError("must be a number of worker processes from 1 to 256, or auto")

    @model_validator(mode="after")
    def _check_grpc_port(self) -> ServerSection:
        if self.grpc_port is not None and self.grpc_port == self.port:
            raise ValueError(
                f"grpc_port = {self.grpc_port} is also the HTTP port (port): give gRPC a "
                "port of its own"
            )
        return self


class ControllerSection(_Strict):
    """The rollout controller that runs inside ``rollwise serve`` (or alone)."""

    enabled: bool = True
    interval_s: float = Field(1.0, gt=0, le=300)
    lease_ttl_s: float = Field(10.0, gt=0, le=3600)
    settle_s: float | None = Field(None, ge=0, le=300)
    """Metrics right after a weight change are not judged; default (and least):
    ``server.routing_poll_interval_s + server.flush_interval_s``."""
    rollback_load_timeout_s: float = Field(300.0, gt=0, le=3600)
    """How long a rollback waits for an unloaded previous stable to be ready on every
    replica again before it gives up (and changes nothing)."""
    unload_previous: bool = True
    """Unload the previous stable from every replica once ``keep_previous_s`` after its
    promotion has passed. On by default: otherwise each deploy leaves one more version
    in every replica's memory for good. It stays registered, so a rollback after that
    reloads it everywhere first and then switches."""


class TokenEntry(_Strict):
    name: str
    role: Literal["viewer", "operator", "feedback"]
    # Never shown: not in reprs, logs or validation errors.
    secret: SecretStr = Field(min_length=8)


class EnvRef(_Strict):
    env: str


class AuthSection(_Strict):
    tokens: str | EnvRef | list[TokenEntry] = Field(default_factory=list)


class FeedbackSection(_Strict):
    """Who may post ground truth to ``/models/{m}/feedback``, and how often.

    Labels decide rollouts (accuracy gates, A/B tests), so by default posting one needs
    a token with the ``feedback`` or ``operator`` role; ``auth: none`` is the explicit
    switch for a trusted network where the labelling pipeline holds no token.
    """

    auth: Literal["token", "none"] = "token"
    max_per_minute: int | None = Field(None, ge=1, le=10_000_000)
    """At most this many labels per minute from one caller (token name, or client
    address without a token); over it: 429. None: no cap."""


class VersionSection(BaseModel):
    # Backend options vary by kind; the backend factory checks them.
    model_config = ConfigDict(extra="allow", frozen=True)
    backend: str


class ModelSection(_Strict):
    stable: str
    versions: dict[str, VersionSection] = Field(min_length=1)
    sticky_key: str | None = None
    salt: str = ""
    task: Literal["classification", "regression"] = "classification"
    agreement_tolerance: float = Field(1e-6, ge=0)
    labels: list[StrictInt | Annotated[StrictStr, Field(max_length=MAX_LABEL_CHARS)]] | None = (
        Field(None, min_length=1, max_length=100_000)
    )
    """The classes a label may be, for versions that cannot tell their own (the model's
    own ``classes_`` win when a loaded version knows them)."""
    comparator: dict[str, Any] | None = None
    """How a shadow's text answers are compared (``rollwise.analysis.comparators``)."""

    @field_validator("sticky_key")
    @classmethod
    def _check_sticky(cls, value: str | None) -> str | None:
        if value is not None:
            parse_sticky_key(value)
        return value


class ConfigFile(_Strict):
    store: str = "sqlite:///rollwise.db"
    server: ServerSection = Field(default_factory=ServerSection)  # type: ignore[arg-type]
    auth: AuthSection = Field(default_factory=AuthSection)
    controller: ControllerSection = Field(default_factory=ControllerSection)  # type: ignore[arg-type]
    registration: RegistrationSection = Field(default_factory=RegistrationSection)
    feedback: FeedbackSection = Field(default_factory=FeedbackSection)  # type: ignore[arg-type]
    models: dict[str, ModelSection] = Field(default_factory=dict)
    providers: ProvidersSection = Field(default_factory=ProvidersSection)
    notifications: list[NotificationSection] = Field(default_factory=list)
    tracing: TracingSection = Field(default_factory=TracingSection)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Token:
    name: str
    role: str
    secret: str = field(repr=False)
    """Kept out of the repr, so that a logged config or token never shows it."""


@dataclass(frozen=True)
class GatewayConfig:
    """The parsed config: what the gateway needs, with paths already resolved."""

    store_url: str
    server: ServerSection
    tokens: tuple[Token, ...]
    models: Mapping[str, ModelSpec]
    base_dir: Path
    source: str = "<config>"
    controller: ControllerSection = field(default_factory=lambda: ControllerSection())  # type: ignore[call-arg]
    registration: RegistrationSection = field(default_factory=lambda: RegistrationSection())
    feedback: FeedbackSection = field(default_factory=lambda: FeedbackSection())  # type: ignore[call-arg]
    labels: Mapping[str, tuple[int | str, ...]] = field(default_factory=dict)
    """Per model, the ``labels:`` list of its config section (models without one absent)."""
    providers: ProvidersSection = field(default_factory=ProvidersSection)
    """Defaults for external gates (``rollwise.providers``): the Prometheus server."""
    notifications: tuple[Target, ...] = ()
    """Where rollout events are sent (``rollwise.notifications``), secrets resolved."""
    tracing: TracingSection = field(default_factory=lambda: TracingSection())  # type: ignore[call-arg]
    """Spans of data-plane requests over OTLP (``rollwise.tracing``); off by default."""
    comparators: Mapping[str, ComparatorSpec] = field(default_factory=dict)
    """Per model, the text comparator of its shadows (models without one absent)."""

    @property
    def settle_s(self) -> float:
        """Seconds after a weight change whose metrics the controller does not judge."""
        if self.controller.settle_s is not None:
            return self.controller.settle_s
        return self.server.routing_poll_interval_s + self.server.flush_interval_s


def parse_sticky_key(text: str) -> StickyKey:
    kind, sep, name = text.partition(":")
    if not sep or not name:
        raise ValueError(f"{text!r} must look like header:NAME, cookie:NAME or field:NAME")
    try:
        sticky_kind = StickyKind(kind)
    except ValueError:
        raise ValueError(
            f"{text!r} has unknown kind {kind!r}; expected header, cookie or field"
        ) from None
    return StickyKey(sticky_kind, name.lower() if sticky_kind is StickyKind.HEADER else name)


def parse_tokens(text: str, origin: str) -> tuple[Token, ...]:
    """Parse ``name:role:secret,...`` into tokens, naming the bad entry on error."""
    tokens: list[Token] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        parts = entry.split(":", 2)
        if len(parts) != 3 or not all(parts):
            raise ConfigError(
                f"{origin}: token entry {entry.split(':')[0]!r} must be name:role:secret"
            )
        name, role, secret = parts
        if role not in ROLES:
            raise ConfigError(
                f"{origin}: token {name!r} has role {role!r}; expected viewer, operator or feedback"
            )
        if len(secret) < 8:
            raise ConfigError(f"{origin}: token {name!r} has a secret shorter than 8 characters")
        tokens.append(Token(name, role, secret))
    return tuple(tokens)


def _format_pydantic(source: str, error: PydanticValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"] if not str(p).startswith("function-"))
        # Union branches add their type name to the location; drop it for readability.
        loc = loc.replace(".str", "").replace(".EnvRef", "").replace(".list[TokenEntry]", "")
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            msg = "unknown key"
        value = item.get("input")
        shown = "" if isinstance(value, dict | list) or value is None else f" = {value!r}"
        lines.append(f"{source}: {loc}{shown}: {msg}")
    return "\n".join(dict.fromkeys(lines))


def _resolve_store_url(url: str, base_dir: Path) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        relative = url[len(prefix) :]
        if relative and relative != ":memory:":
            return prefix + str((base_dir / relative).resolve())
    return url


def _model_spec(name: str, section: ModelSection, source: str) -> ModelSpec:
    if section.stable not in section.versions:
        known = ", ".join(section.versions)
        raise ConfigError(
            f"{source}: models.{name}.stable = {section.stable!r}: "
            f"not one of the versions ({known})"
        )
    versions: dict[str, VersionSpec] = {}
    for version_name, version in section.versions.items():
        options = dict(version.model_extra or {})
        versions[version_name] = VersionSpec(version_name, version.backend, options)
    return ModelSpec(
        name=name,
        stable=section.stable,
        versions=versions,
        sticky_key=parse_sticky_key(section.sticky_key) if section.sticky_key else None,
        salt=section.salt,
        task=section.task,
        agreement_tolerance=section.agreement_tolerance,
    )


def check_name(kind: str, name: str, source: str) -> None:
    # Names go into URL paths: only plain characters, and never a bare "." or "..".
    if not name or name.strip(".") == "" or not all(c.isalnum() or c in "-_." for c in name):
        raise ConfigError(
            f"{source}: {kind} name {name!r} may only hold letters, digits, '-', '_' and '.'"
        )


def parse_config(
    data: Mapping[str, Any],
    *,
    base_dir: Path,
    source: str = "<config>",
    environ: Mapping[str, str] | None = None,
) -> GatewayConfig:
    """Check a config mapping and turn it into a ``GatewayConfig``."""
    env = os.environ if environ is None else environ
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping of keys to values")
    try:
        parsed = ConfigFile.model_validate(data)
    except PydanticValidationError as error:
        raise ConfigError(_format_pydantic(source, error)) from None

    tokens: tuple[Token, ...]
    auth = parsed.auth.tokens
    if isinstance(auth, EnvRef):
        tokens = parse_tokens(env.get(auth.env, ""), f"{source}: auth.tokens (env {auth.env})")
    elif isinstance(auth, str):
        tokens = parse_tokens(auth, f"{source}: auth.tokens")
    else:
        tokens = tuple(Token(t.name, t.role, t.secret.get_secret_value()) for t in auth)
    # Tokens from the environment add to the file's, so secrets need not live in it.
    if "ROLLWISE_TOKENS" in env and not (
        isinstance(auth, EnvRef) and auth.env == "ROLLWISE_TOKENS"
    ):
        tokens += parse_tokens(env["ROLLWISE_TOKENS"], "environment ROLLWISE_TOKENS")

    from rollwise.backends.options import check_model_backends
    from rollwise.backends.registry import validate_backend_options

    models: dict[str, ModelSpec] = {}
    for name, section in parsed.models.items():
        check_name("model", name, source)
        for version_name in section.versions:
            check_name(f"models.{name}.versions: version", version_name, source)
        spec = _model_spec(name, section, source)
        for version in spec.versions.values():
            try:
                validate_backend_options(version, model=spec.name)
            except ConfigError as error:
                raise ConfigError(f"{source}: {error}") from None
        kinds = {version.name: version.backend for version in spec.versions.values()}
        check_model_backends(kinds, f"{source}: models.{name}.versions")
        models[name] = spec

    settle_s = parsed.server.routing_poll_interval_s + parsed.server.flush_interval_s
    if parsed.controller.settle_s is not None and parsed.controller.settle_s < settle_s:
        raise ConfigError(
            f"{source}: controller.settle_s = {parsed.controller.settle_s:g} must be at least "
            f"server.routing_poll_interval_s + server.flush_interval_s = {settle_s:g}: until "
            "every replica has the new weights and has flushed, metrics still mix the old split"
        )
    if parsed.server.heartbeat_timeout_s < 2 * parsed.server.heartbeat_interval_s:
        raise ConfigError(
            f"{source}: server.heartbeat_timeout_s = {parsed.server.heartbeat_timeout_s:g} must "
            f"be at least twice server.heartbeat_interval_s = "
            f"{parsed.server.heartbeat_interval_s:g}: one late heartbeat must not count a "
            "replica as gone"
        )
    token_env = parsed.providers.prometheus.bearer_token_env
    if token_env is not None and not env.get(token_env):
        raise ConfigError(
            f"{source}: providers.prometheus.bearer_token_env = {token_env!r}: "
            "that environment variable is not set"
        )
    return GatewayConfig(
        store_url=_resolve_store_url(parsed.store, base_dir),
        server=parsed.server,
        tokens=tokens,
        models=models,
        base_dir=base_dir,
        source=source,
        controller=parsed.controller,
        registration=parsed.registration,
        feedback=parsed.feedback,
        providers=parsed.providers,
        labels={
            name: tuple(section.labels)
            for name, section in parsed.models.items()
            if section.labels is not None
        },
        notifications=resolve_targets(parsed.notifications, env, source),
        tracing=parsed.tracing,
        comparators={
            name: parse_comparator(
                section.comparator, where=f"{source}: models.{name}.comparator", environ=env
            )
            for name, section in parsed.models.items()
            if section.comparator is not None
        },
    )


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read a YAML (or ``.toml``) config file; refuse it with a clear message if bad."""
    file = Path(path)
    data = load_document(file, what="config ")
    return parse_config(data, base_dir=file.resolve().parent, source=file.name, environ=environ)


def load_document(path: str | Path, *, what: str = "") -> Any:
    """Read a YAML document (JSON is a subset of YAML), or TOML by the ``.toml`` suffix,
    such as a config or a rollout spec; ``what`` names it in the refusal to read it."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read {what}{str(file)!r}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{file}: not UTF-8 text (byte {error.start}: {error.reason})") from None
    try:
        data = tomllib.loads(text) if file.suffix == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(
            f"{file}: not valid {'TOML' if file.suffix == '.toml' else 'YAML'}: {error}"
        ) from None
    if data is None:
        raise ConfigError(f"{file}: the file is empty")
    return data


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
