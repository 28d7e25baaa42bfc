"""The ``notifications:`` section of the gateway config, checked at load.

Secrets never sit in the file: a header value (or the URL itself, as a Slack webhook
URL is a secret) may be ``{env: NAME}``, optionally with a ``prefix`` such as
``"Bearer "``; it is read from the environment when the config loads, and a variable
that is not set refuses the config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rollwise.errors import ConfigError
from rollwise.notifications.targets import EVENT_NAMES, Target, kinds_for


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnvValue(_Strict):
    """A value read from an environment variable when the config loads."""

    env: str = Field(min_length=1)
    prefix: str = ""


class NotificationSection(_Strict):
    """One target: where, in what form, and which events of which models."""

    url: str | EnvValue
    name: str | None = Field(None, min_length=1, max_length=100)
    format: Literal["json", "slack"] = "json"
    events: list[str] | None = Field(None, min_length=1)
    models: list[str] | None = Field(None, min_length=1)
    headers: dict[str, str | EnvValue] = Field(default_factory=dict)
    timeout_s: float = Field(5.0, gt=0, le=60)
    """Each attempt at most; a receiver that hangs is given up on after it."""
    retries: int = Field(3, ge=0, le=10)
    backoff_s: float = Field(1.0, gt=0, le=60)
    """The wait before the first retry, doubled for each one after it (at most 60 s)."""
    queue_size: int = Field(1000, ge=1, le=100_000)
    """Notifications waiting for this target at most; one more drops the oldest."""

    @field_validator("events")
    @classmethod
    def _check_events(cls, value: list[str] | None) -> list[str] | None:
        for name in value or ():
            if name not in EVENT_NAMES:
                raise ValueError(
                    f"unknown event {name!r}; expected some of {', '.join(EVENT_NAMES)}"
                )
        return value


def _resolved(value: str | EnvValue, key: str, env: Mapping[str, str], source: str) -> str:
    if isinstance(value, str):
        return value
    if value.env not in env:
        raise ConfigError(f"{source}: {key}: environment variable {value.env} is not set")
    return value.prefix + env[value.env]


def _check_url(url: str, key: str, secret: bool, source: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # A URL from the environment may hold a secret: never echo it.
        shown = "" if secret else f" = {url!r}"
        raise ConfigError(f"{source}: {key}{shown}: must be an http:// or https:// URL")
    return parts.hostname


def resolve_targets(
    sections: Sequence[NotificationSection], env: Mapping[str, str], source: str
) -> tuple[Target, ...]:
    """Targets with their secrets read from ``env`` and a unique name each (the URL's
    host by default, numbered when hosts repeat)."""
    targets: list[Target] = []
    names: set[str] = set()
    for index, section in enumerate(sections):
        key = f"notifications[{index}]"
        url = _resolved(section.url, f"{key}.url", env, source)
        host = _check_url(url, f"{key}.url", not isinstance(section.url, str), source)
        name = section.name or host
        if name in names:
            if section.name:
                raise ConfigError(f"{source}: {key}.name = {name!r}: another target has it")
            name = f"{host}#{index}"
        names.add(name)
        headers = {
            header: _resolved(value, f"{key}.headers.{header}", env, source)
            for header, value in section.headers.items()
        }
        targets.append(
            Target(
                name=name,
                url=url,
                format=section.format,
                kinds=kinds_for(section.events),
                models=frozenset(section.models) if section.models is not None else None,
                headers=headers,
                timeout_s=section.timeout_s,
                retries=section.retries,
                backoff_s=section.backoff_s,
                queue_size=section.queue_size,
            )
        )
    return tuple(targets)
