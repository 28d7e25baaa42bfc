"""Pure: which rollout events a notification target wants, and what it is sent.

A target names events by short names (``rolled_back``); the rollout engine records
them as ``rollout.*`` kinds. The names map onto kinds here, once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rollwise.domain import Event

EVENT_NAMES: Mapping[str, frozenset[str]] = {
    "started": frozenset({"rollout.started"}),
    # A person's promote that lets a pause go is a step too.
    "step": frozenset({"rollout.step", "rollout.step_skipped"}),
    "paused": frozenset({"rollout.paused"}),
    "resumed": frozenset({"rollout.resumed"}),
    "promoted": frozenset({"rollout.promoted"}),
    # Aborts are rollbacks with the outcome ``aborted``.
    "rolled_back": frozenset({"rollout.rolled_back"}),
    "failed": frozenset({"rollout.failed"}),
    "validated": frozenset({"rollout.validated"}),
    "experiment_decided": frozenset({"rollout.experiment_decided"}),
    # An A/B test that ended without a winner: the stable version stays.
    "no_difference": frozenset({"rollout.no_difference"}),
    "inconclusive": frozenset({"rollout.inconclusive"}),
}
"""Event names a target may filter on, and the event kinds each stands for."""

KIND_NAMES: Mapping[str, str] = {
    kind: name for name, kinds in EVENT_NAMES.items() for kind in kinds
}
"""Each notified event kind, and its short name."""

Format = Literal["json", "slack"]

_ICONS: Mapping[str, str] = {
    "started": ":rocket:",
    "step": ":arrow_forward:",
    "paused": ":double_vertical_bar:",
    "resumed": ":arrow_forward:",
    "promoted": ":white_check_mark:",
    "rolled_back": ":rotating_light:",
    "failed": ":x:",
    "validated": ":white_check_mark:",
    "experiment_decided": ":bar_chart:",
    "no_difference": ":heavy_minus_sign:",
    "inconclusive": ":grey_question:",
}


@dataclass(frozen=True, slots=True)
class Target:
    """One place notifications go, as the config resolved it (secrets included)."""

    name: str
    """Names the target in /metrics and the log; never the URL, which may be a secret."""
    url: str = field(repr=False)
    format: Format = "json"
    kinds: frozenset[str] | None = None
    """Event kinds sent; None: every kind in ``KIND_NAMES``."""
    models: frozenset[str] | None = None
    """Models whose events are sent; None: every model."""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout_s: float = 5.0
    retries: int = 3
    backoff_s: float = 1.0
    queue_size: int = 1000


def kinds_for(names: list[str] | None) -> frozenset[str] | None:
    """The event kinds that ``names`` stand for; None (all) when no names are given."""
    if names is None:
        return None
    return frozenset(kind for name in names for kind in EVENT_NAMES[name])


def wants(target: Target, event: Event) -> bool:
    """Whether ``target`` is sent ``event``: a rollout event of a kind and a model it
    asked for. Other events (routing, versions) are never sent."""
    if event.kind not in KIND_NAMES:
        return False
    if target.kinds is not None and event.kind not in target.kinds:
        return False
    return target.models is None or event.model in target.models


def summary(event: Event) -> str:
    """One readable line: icon, model, rollout, what happened and why, and who did it."""
    name = KIND_NAMES.get(event.kind, event.kind)
    icon = _ICONS.get(name, ":information_source:")
    rollout = event.data.get("rollout")
    which = f" rollout #{rollout}" if isinstance(rollout, int) else " rollout"
    message = " ".join(event.message.split())
    return f"{icon} {event.model}{which} {name.replace('_', ' ')}: {message} (by {event.actor})"


def body(event: Event, delivery_id: str) -> dict[str, Any]:
    """The plain webhook's JSON: the event, with its short name and a delivery id that
    stays the same across retries (for the receiver to drop duplicates)."""
    return {
        "id": delivery_id,
        "event_id": event.id,
        "model": event.model,
        "kind": event.kind,
        "event": KIND_NAMES.get(event.kind, event.kind),
        "message": event.message,
        "actor": event.actor,
        "at_s": event.at_s,
        "data": dict(event.data),
    }


def payload(target: Target, event: Event, delivery_id: str) -> bytes:
    """What is POSTed to ``target`` for ``event``: the event as JSON, or Slack's
    ``{"text": ...}`` with its one-line summary."""
    document: dict[str, Any] = (
        {"text": summary(event)} if target.format == "slack" else body(event, delivery_id)
    )
    # Event data was stored as JSON, so it encodes; str() is only a guard for a caller
    # that put something else in.
    return json.dumps(document, default=str, separators=(",", ":")).encode()
