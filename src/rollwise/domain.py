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


class VersionHealth(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


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

    @property
    def effective_salt(self) -> str:
        return self.salt or self.name


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
