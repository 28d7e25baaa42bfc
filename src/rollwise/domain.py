"""Core value types shared by every layer: models, versions, routing, events.

Everything here is an immutable value with no I/O, so that routing tables, rollout
decisions and their tests can be built from plain data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

BUCKETS = 10_000
"""Sticky keys hash into this many buckets; a weight of N % owns N * 100 of them."""


class Role(StrEnum):
    """Why a version answered a request: routing chose it for a user, it was mirrored,
    or an operator forced it (a preview). Each is measured apart, so previews never
    count towards a split or its sample-ratio check."""

    SERVED = "served"
    SHADOW = "shadow"
    PREVIEW = "preview"


ROLES: dict[str, Role] = {role.value: role for role in Role}
"""Each role by its value: a dict lookup in C, where ``Role(value)`` runs Python code
(which the store's writes of logged answers did for every row)."""


class VersionHealth(StrEnum):
    """A version's load state in one replica."""

    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNLOADED = "unloaded"
    """Loaded once and let go (retired, or parked after a promotion); not serving."""


class VersionSource(StrEnum):
    """Who manages a version (or a model): the config file, which stays its source and
    retires it when it is removed there, or the control API, whose versions persist in
    the store, are immutable, and are retired only through the API."""

    CONFIG = "config"
    API = "api"


class StickyKind(StrEnum):
    HEADER = "header"
    COOKIE = "cookie"
    FIELD = "field"


@dataclass(frozen=True, slots=True)
class StickyKey:
    """Where the user identity that pins a user to a version is read from."""

    kind: StickyKind
    name: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.name}"


@dataclass(frozen=True, slots=True)
class VersionSpec:
    """One version of a model as configured: which backend serves it and how."""

    name: str
    backend: str
    options: Mapping[str, Any] = field(default_factory=dict)
    source: VersionSource = VersionSource.CONFIG


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model as configured: its versions, its stable version and its sticky key."""

    name: str
    stable: str
    versions: Mapping[str, VersionSpec]
    sticky_key: StickyKey | None = None
    salt: str = ""
    task: str = "classification"
    agreement_tolerance: float = 1e-6
    source: VersionSource = VersionSource.CONFIG

    @property
    def effective_salt(self) -> str:
        return self.salt or self.name


@dataclass(frozen=True, slots=True)
class RegisteredVersion:
    """A version as the store holds it for the whole fleet.

    ``spec.options`` are what every replica loads: an artifact reference that can move
    (an MLflow alias) is pinned at registration to what it named then, so that every
    replica loads the same artifact. ``requested`` keeps the options as they were
    submitted, and ``spec_sha256`` fingerprints the backend with them: registering the
    same spec again changes nothing, a different one under the same name is refused.
    """

    model: str
    spec: VersionSpec
    requested: Mapping[str, Any] = field(default_factory=dict)
    spec_sha256: str = ""
    artifact_sha256: str = ""
    """The artifact's sha256 when known at registration (declared, or pinned)."""
    resolved: Mapping[str, Any] = field(default_factory=dict)
    """How a moving reference was pinned, e.g. ``{"alias": "challenger", "version": "3"}``."""
    registered_at_s: float = 0.0
    keep_loaded: bool = True
    """Whether replicas keep it in memory; False once it is parked after a promotion
    (``unload_previous``), True again when a rollback needs it back."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def source(self) -> VersionSource:
        return self.spec.source


@dataclass(frozen=True, slots=True)
class Replica:
    """One gateway process of the fleet, as its heartbeat last recorded it."""

    id: str
    host: str
    pid: int
    started_at_s: float
    last_seen_s: float
    rollwise_version: str = ""
    stopped: bool = False
    """It said goodbye (a clean stop): gone at once, without waiting for its heartbeat
    to age."""


@dataclass(frozen=True, slots=True)
class ReplicaVersion:
    """The load state of one version in one replica."""

    replica: str
    model: str
    version: str
    health: VersionHealth
    error: str = ""
    artifact_sha256: str = ""
    updated_at_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Routing:
    """How one model's traffic is split: integer percent per version, plus mirrors.

    ``weights`` sums to 100. ``mirrors`` maps a version that serves nobody to the
    percent of all requests copied to it in the background. ``stable`` is the version
    that takes the top of the bucket range, so that raising any other version's weight
    only ever adds buckets to it.
    """

    model: str
    stable: str
    weights: Mapping[str, int]
    mirrors: Mapping[str, int] = field(default_factory=dict)
    salt: str = ""

    def weight_of(self, version: str) -> int:
        return self.weights.get(version, 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "stable": self.stable,
            "weights": dict(self.weights),
            "mirrors": dict(self.mirrors),
            "salt": self.salt,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Routing:
        return cls(
            model=str(data["model"]),
            stable=str(data["stable"]),
            weights={str(k): int(v) for k, v in dict(data["weights"]).items()},
            mirrors={str(k): int(v) for k, v in dict(data.get("mirrors") or {}).items()},
            salt=str(data.get("salt") or ""),
        )


@dataclass(frozen=True, slots=True)
class Event:
    """A recorded change (routing, health, rollout phase) with its reason and figures."""

    model: str
    kind: str
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)
    at_s: float = 0.0
    id: int | None = None
    actor: str = "system"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "kind": self.kind,
            "message": self.message,
            "data": dict(self.data),
            "at_s": self.at_s,
            "actor": self.actor,
        }
