"""Hooks in a rollout spec: the ``webhook`` and ``confirm`` steps and the lifecycle hooks
(``pre_rollout``, ``pre_promotion``, ``post_promotion``, ``on_rollback``), parsed and
checked, and the outcome of one call as the controller hands it to the state machine.

Only values and their checks live here; :mod:`rollwise.rollout.hook_steps` decides what
a tick does with an outcome, and :mod:`rollwise.hook_calls` makes the HTTP calls.

A header's value is written literally or read from the environment
(``{env: NAME}``) when the call is made; headers that carry credentials
(``Authorization``, names with ``token``, ``secret``, ``key``, ``password`` or
``cookie``) must come from the environment, because specs are stored and shown in events.
``NAME`` must start with ``ROLLWISE_SECRET_`` (see :mod:`rollwise.secrets_env`): any other
name would let an operator send the gateway's own secrets to a URL of their choosing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from rollwise.errors import ConfigError
from rollwise.secrets_env import SPEC_ENV_PREFIX, check_literal_header, check_spec_env_name


class HookKind(StrEnum):
    """Where a hook call comes from: a step, or a moment of the rollout's life."""

    WEBHOOK = "webhook"
    CONFIRM = "confirm"
    PRE_ROLLOUT = "pre_rollout"
    PRE_PROMOTION = "pre_promotion"
    POST_PROMOTION = "post_promotion"
    ON_ROLLBACK = "on_rollback"


class OnFailure(StrEnum):
    """What a failed hook step (or a confirm that waited too long) does."""

    ROLLBACK = "rollback"
    PAUSE = "pause"


DEFAULT_TIMEOUT_S = 10.0
DEFAULT_RETRIES = 2
DEFAULT_CONFIRM_INTERVAL_S = 5.0
MAX_RETRIES = 10
"""Retries back off (0.5 s, 1 s, 2 s, ... at most 8 s): more than this is a typo."""


@dataclass(frozen=True, slots=True)
class Header:
    """One header of a hook call: a literal ``value``, or the environment variable ``env``."""

    name: str
    value: str = ""
    env: str = ""

    def to_dict(self) -> Any:
        return {"env": self.env} if self.env else self.value


@dataclass(frozen=True, slots=True)
class HookCall:
    """A POST of the rollout's context to ``url``; 2xx within ``timeout_s`` is a success,
    anything else is tried again ``retries`` times with backoff."""

    url: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    headers: tuple[Header, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "url": self.url,
            "timeout_s": self.timeout_s,
            "retries": self.retries,
        }
        if self.headers:
            out["headers"] = {h.name: h.to_dict() for h in self.headers}
        return out


@dataclass(frozen=True, slots=True)
class Webhook:
    """A step that calls ``call`` once and goes on when it answers 2xx; otherwise
    ``on_failure`` rolls back or pauses. Lifecycle hooks before the first weight and
    before the promotion compile into this step too (``kind`` says which)."""

    call: HookCall
    on_failure: OnFailure = OnFailure.ROLLBACK
    kind: HookKind = HookKind.WEBHOOK

    def to_dict(self) -> dict[str, Any]:
        out = {**self.call.to_dict(), "on_failure": self.on_failure.value}
        if self.kind is not HookKind.WEBHOOK:
            out["hook"] = self.kind.value
        return {"webhook": out}


@dataclass(frozen=True, slots=True)
class Confirm:
    """A step that polls ``url`` every ``interval_s`` until it answers 2xx (or a person
    promotes); after ``max_wait_s`` without a 2xx, ``on_timeout`` pauses or rolls back
    (None: wait for ever, like ``pause: {}``)."""

    url: str
    interval_s: float = DEFAULT_CONFIRM_INTERVAL_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    headers: tuple[Header, ...] = ()
    max_wait_s: float | None = None
    on_timeout: OnFailure = OnFailure.PAUSE

    @property
    def call(self) -> HookCall:
        """One poll: a single try, the interval is the retry."""
        return HookCall(self.url, self.timeout_s, 0, self.headers)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "url": self.url,
            "interval_s": self.interval_s,
            "timeout_s": self.timeout_s,
            "on_timeout": self.on_timeout.value,
        }
        if self.headers:
            out["headers"] = {h.name: h.to_dict() for h in self.headers}
        if self.max_wait_s is not None:
            out["max_wait_s"] = self.max_wait_s
        return {"confirm": out}


@dataclass(frozen=True, slots=True)
class LifecycleHooks:
    """The spec's ``hooks:`` section. ``pre_rollout`` and ``pre_promotion`` compile into
    :class:`Webhook` steps; the other two notify of the outcome and change nothing."""

    pre_rollout: tuple[HookCall, ...] = ()
    pre_promotion: tuple[HookCall, ...] = ()
    post_promotion: tuple[HookCall, ...] = ()
    on_rollback: tuple[HookCall, ...] = ()

    def __bool__(self) -> bool:
        return bool(
            self.pre_rollout or self.pre_promotion or self.post_promotion or self.on_rollback
        )


@dataclass(frozen=True, slots=True)
class HookOutcome:
    """How one hook call ended, for the hook step that started it: the step's index
    and start time name the step, so an outcome never lets another step go."""

    step_index: int
    step_started_s: float
    url: str
    ok: bool
    status_code: int | None = None
    """The last answer's HTTP status; None when no answer came (timeout, refused)."""
    error: str = ""
    """Why no answer came, in a few words."""
    body: str = ""
    """The start of the last answer's body (at most ``BODY_EXCERPT_CHARS``)."""
    attempts: int = 1
    duration_s: float = 0.0

    def answer(self) -> str:
        """What the hook answered, in one line: the reason events and messages show."""
        if self.status_code is None:
            said = self.error or "no answer"
        else:
            said = f"answered {self.status_code}"
            if self.body:
                said += f": {self.body!r}"
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        return f"{self.url} {said}{tries}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "ok": self.ok,
            "status_code": self.status_code,
            "error": self.error,
            "body": self.body,
            "attempts": self.attempts,
            "duration_s": round(self.duration_s, 3),
        }


BODY_EXCERPT_CHARS = 200


# -- parsing -----------------------------------------------------------------------------

HOOK_KEYS = ("url", "timeout_s", "retries", "headers")
WEBHOOK_KEYS = (*HOOK_KEYS, "on_failure")
CONFIRM_KEYS = ("url", "interval_s", "timeout_s", "headers", "max_wait_s", "on_timeout")
LIFECYCLE_KEYS = ("pre_rollout", "pre_promotion", "post_promotion", "on_rollback")


def parse_webhook(data: Any, where: str) -> Webhook:
    """A ``webhook:`` step: ``{url, timeout_s, retries, headers, on_failure}``."""
    options = _options(data, where, WEBHOOK_KEYS)
    on_failure = _choice(options, "on_failure", where, OnFailure.ROLLBACK)
    return Webhook(_call(options, where), on_failure)


def parse_confirm(data: Any, where: str) -> Confirm:
    """A ``confirm:`` step: ``{url, interval_s, timeout_s, headers, max_wait_s, on_timeout}``."""
    options = _options(data, where, CONFIRM_KEYS)
    return Confirm(
        _url(options, where),
        _seconds(options, "interval_s", where, DEFAULT_CONFIRM_INTERVAL_S),
        _seconds(options, "timeout_s", where, DEFAULT_TIMEOUT_S),
        _headers(options.get("headers"), f"{where}.headers"),
        _seconds({k: v for k, v in options.items() if v is not None}, "max_wait_s", where, None),
        _choice(options, "on_timeout", where, OnFailure.PAUSE),
    )


def parse_lifecycle_hooks(data: Any, where: str) -> LifecycleHooks:
    """The ``hooks:`` section: each key a list of ``{url, timeout_s, retries, headers}``."""
    if data is None:
        return LifecycleHooks()
    options = _options(data, where, LIFECYCLE_KEYS)
    lists: dict[str, tuple[HookCall, ...]] = {}
    for key in LIFECYCLE_KEYS:
        items = options.get(key) or []
        if isinstance(items, Mapping):
            items = [items]  # one hook needs no list around it
        if isinstance(items, str | bytes) or not isinstance(items, Sequence):
            raise ConfigError(f"{where}.{key}: must be a list of hooks {{url, ...}}, got {items!r}")
        calls = []
        for i, item in enumerate(items):
            here = f"{where}.{key}[{i}]"
            calls.append(_call(_options(item, here, HOOK_KEYS), here))
        lists[key] = tuple(calls)
    return LifecycleHooks(**lists)


def _options(data: Any, where: str, keys: Sequence[str]) -> Mapping[str, Any]:
    if isinstance(data, str):
        data = {"url": data}  # `webhook: http://...` reads as the URL alone
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: must be a mapping (e.g. {{url: http://...}}), got {data!r}")
    for key in data:
        if key not in keys:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(keys)})")
    return data


def _call(options: Mapping[str, Any], where: str) -> HookCall:
    retries = options.get("retries", DEFAULT_RETRIES)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise ConfigError(
            f"{where}.retries: must be a whole number within 0..{MAX_RETRIES}, got {retries!r}"
        )
    return HookCall(
        _url(options, where),
        _seconds(options, "timeout_s", where, DEFAULT_TIMEOUT_S),
        retries,
        _headers(options.get("headers"), f"{where}.headers"),
    )


def _url(options: Mapping[str, Any], where: str) -> str:
    if "url" not in options:
        raise ConfigError(f"{where}: missing key 'url'")
    url = options["url"]
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.url: must be an http:// or https:// URL, got {url!r}")
    host = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    if not host or any(c.isspace() for c in url):
        raise ConfigError(f"{where}.url: {url!r} has no host (or contains spaces)")
    if "@" in host:
        raise ConfigError(
            f"{where}.url: credentials in the URL would be stored and shown; put them in a "
            f"header from the environment ({{env: {SPEC_ENV_PREFIX}NAME}})"
        )
    return url


def _seconds(options: Mapping[str, Any], key: str, where: str, default: float | None) -> Any:
    if key not in options:
        return default
    value = options[key]
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{where}.{key}: must be seconds > 0, got {value!r}")
    return float(value)


def _choice(options: Mapping[str, Any], key: str, where: str, default: OnFailure) -> OnFailure:
    raw = options.get(key, default.value)
    try:
        return OnFailure(raw)
    except ValueError:
        raise ConfigError(f"{where}.{key}: {raw!r} is not one of rollback, pause") from None


def _headers(data: Any, where: str) -> tuple[Header, ...]:
    if data is None:
        return ()
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: must be a mapping of header names to values, got {data!r}")
    headers = []
    for name, value in data.items():
        here = f"{where}.{name}"
        if not isinstance(name, str) or not name or not name.isascii() or " " in name:
            raise ConfigError(f"{where}: header name {name!r} is not a valid name")
        if isinstance(value, Mapping):
            env = value.get("env")
            if set(value) != {"env"} or not isinstance(env, str) or not env:
                raise ConfigError(
                    f"{here}: must be text or {{env: NAME}} (an environment variable), "
                    f"got {dict(value)!r}"
                )
            check_spec_env_name(env, here)
            headers.append(Header(name, env=env))
            continue
        if not isinstance(value, str):
            raise ConfigError(f"{here}: must be text or {{env: NAME}}, got {value!r}")
        check_literal_header(name, here, f"{{env: {SPEC_ENV_PREFIX}HOOK_TOKEN}}")
        headers.append(Header(name, value=value))
    return tuple(headers)
