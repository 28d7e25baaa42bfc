"""The steps a rollout is made of: the one vocabulary every strategy compiles into.

Steps are plain frozen values. *Instant* steps (``set_weight``, ``mirror``, ``preview``,
``switch``) change routing and are done at once; *waiting* steps (``pause``, ``analyze``,
``experiment``, and the hook steps ``webhook`` and ``confirm`` of
:mod:`rollwise.rollout.hooks`) hold the rollout until time, evidence, a hook's answer or
a person lets it go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rollwise.analysis.gates import Gate, Metric
from rollwise.rollout.hooks import Confirm, HookKind, Webhook


@dataclass(frozen=True, slots=True)
class SetWeight:
    """The candidate answers ``weight`` % of user traffic (sticky per user)."""

    weight: int

    def to_dict(self) -> dict[str, Any]:
        return {"set_weight": self.weight}


@dataclass(frozen=True, slots=True)
class MirrorStep:
    """``percent`` % of requests are copied to the candidate; nobody sees its answers."""

    percent: int

    def to_dict(self) -> dict[str, Any]:
        return {"mirror": self.percent}


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait ``duration_s``, or until a person runs ``promote`` when it is None."""

    duration_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"pause": {} if self.duration_s is None else {"duration_s": self.duration_s}}


@dataclass(frozen=True, slots=True)
class Analyze:
    """Hold until ``gates`` pass (next step) or fail (roll back); give up after
    ``max_duration_s`` without a decision (None: the rollback policy's limit)."""

    gates: tuple[Gate, ...]
    max_duration_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"gates": [g.to_dict() for g in self.gates]}
        if self.max_duration_s is not None:
            out["max_duration_s"] = self.max_duration_s
        return {"analyze": out}


@dataclass(frozen=True, slots=True)
class Experiment:
    """An A/B test: hold ``split`` % on the candidate until a statistical decision."""

    split: int
    metric: Metric
    mde: float
    alpha: float = 0.05
    power: float = 0.8
    baseline: float | None = None
    """The stable rate (proportions) or one observation's standard deviation (means)."""
    max_duration_s: float = 3600.0
    min_samples: int = 100

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "split": self.split,
            "metric": self.metric.value,
            "mde": self.mde,
            "alpha": self.alpha,
            "power": self.power,
            "max_duration_s": self.max_duration_s,
            "min_samples": self.min_samples,
        }
        if self.baseline is not None:
            out["baseline"] = self.baseline
        return {"experiment": out}


@dataclass(frozen=True, slots=True)
class Preview:
    """The candidate is reachable only by preview requests (operator token plus
    ``X-Rollwise-Version``); ``mirror`` % of live requests are also copied to it."""

    mirror: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"preview": {"mirror": self.mirror} if self.mirror else {}}


@dataclass(frozen=True, slots=True)
class Switch:
    """All traffic moves to the candidate at once; the old version stays ready for an
    instant rollback for ``keep_previous_s``."""

    keep_previous_s: float = 600.0

    def to_dict(self) -> dict[str, Any]:
        return {"switch": {"keep_previous_s": self.keep_previous_s}}


Step = SetWeight | MirrorStep | Pause | Analyze | Experiment | Preview | Switch | Webhook | Confirm
INSTANT_STEPS = (SetWeight, MirrorStep, Preview, Switch)


def describe_step(step: Step) -> str:
    """The step in a few words, for events, the CLI and the dashboard."""
    match step:
        case SetWeight(weight=w):
            return f"set weight {w} %"
        case MirrorStep(percent=p):
            return f"mirror {p} %" if p else "stop mirroring"
        case Pause(duration_s=None):
            return "pause until promoted"
        case Pause(duration_s=d):
            return f"pause {d:g} s"
        case Analyze(gates=gates):
            return f"analyze {len(gates)} gate{'s' if len(gates) != 1 else ''}"
        case Experiment(split=split, metric=metric):
            return f"A/B test on {metric.value} at {split} %"
        case Preview(mirror=m):
            return "preview" + (f" with {m} % mirrored" if m else "")
        case Switch():
            return "switch all traffic"
        case Webhook(call=call, kind=kind, on_failure=on_failure):
            what = "call webhook" if kind is HookKind.WEBHOOK else f"{kind.value} hook"
            what = what.replace("_", "-")  # pre-rollout, pre-promotion
            return f"{what} {call.url} ({on_failure.value} on failure)"
        case Confirm(url=url, max_wait_s=wait, on_timeout=on_timeout):
            limit = f", {on_timeout.value} after {wait:g} s" if wait is not None else ""
            return f"wait for confirmation from {url}{limit}"
    raise AssertionError(step)  # pragma: no cover
