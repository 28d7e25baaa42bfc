"""Metrics over time, for charts: stored per-second buckets grouped into steps of
``step_s`` seconds, each step's merged window turned into the figures a chart draws
(rates, error rate, latency quantiles, accuracy and agreement with 95 % Wilson
intervals, drift against the stable version), and the events that mark a change.

Pure: the caller reads the rows and the clock and passes them in. A bucket counts
toward the step of its ``measured_s`` (for late labels the second their predictions
were made, as everywhere else) and whole: a bucket wider than one second, written after
a slow flush, is not spread over the steps it spans.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rollwise.domain import Event, Role
from rollwise.metrics.recorder import VersionWindow
from rollwise.stats import drift
from rollwise.stats.proportions import wilson_interval

DEFAULT_POINTS = 180
"""About how many steps a window is cut into when the caller names no step."""

MAX_POINTS = 1000
"""The most steps a caller may ask for (``window_s / step_s``): each costs a merged
window per version and role while it is built, and a value per figure in the reply."""

NICE_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)
"""Steps a default is chosen from, so that the times on a chart's axis read well."""

INTERVAL_ALPHA = 0.05
"""Accuracy and agreement intervals are 95 % Wilson score intervals."""

DRIFT_MIN_OUTPUTS = 100
"""Outputs each version needs in a step for its PSI to be shown: a gate's default
``min_samples``. Below it the PSI is mostly its own upward bias (about ``(B - 1)(1/n_c
+ 1/n_t)``, see :mod:`rollwise.stats.drift`) and would draw noise as drift."""

MAX_MARKS = 200
MAX_MARK_CHARS = 160

MARK_KINDS = frozenset(
    {
        "routing.changed",
        "routing.initialized",
        "routing.reset",
        "rollout.started",
        "rollout.step",
        "rollout.step_skipped",
        "rollout.paused",
        "rollout.resumed",
        "rollout.analysis_passed",
        "rollout.gate_failed",
        "rollout.experiment_decided",
        "rollout.routing_restored",
        "rollout.promoted",
        "rollout.rolled_back",
        "rollout.validated",
        "rollout.no_difference",
        "rollout.inconclusive",
        "rollout.failed",
    }
)
"""Event kinds that change where traffic goes or decide a rollout's step: what a chart
marks. An abort is ``rollout.rolled_back`` with the outcome ``aborted``."""

SERVED_FIGURES = (
    "requests_per_s",
    "error_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "feedback",
    "mae",
)
SHADOW_FIGURES = (*SERVED_FIGURES, "agreement", "agreement_low", "agreement_high", "dropped")

Figure = float | int | None
StepWindows = dict[tuple[str, Role], dict[int, VersionWindow]]
"""Merged windows by (version, role), then by step index; steps without data absent."""


def default_step_s(window_s: int, points: int = DEFAULT_POINTS) -> int:
    """The smallest nice step that cuts ``window_s`` into at most about ``points`` steps."""
    wanted = window_s / points
    for step_s in NICE_STEPS_S:
        if step_s >= wanted:
            return step_s
    day_s = 86400
    return day_s * math.ceil(wanted / day_s)


@dataclass(frozen=True, slots=True)
class Grid:
    """Steps of ``step_s`` seconds, aligned to multiples of it, from the one holding
    ``until_s - window_s`` to the one holding ``until_s``."""

    first_s: int
    step_s: int
    count: int
    until_s: float

    @classmethod
    def covering(cls, until_s: float, window_s: int, step_s: int) -> Grid:
        if step_s < 1 or window_s < 1:
            raise ValueError(f"window_s={window_s} and step_s={step_s} must be >= 1")
        last_s = math.floor(until_s / step_s) * step_s
        first_s = math.floor((until_s - window_s) / step_s) * step_s
        return cls(first_s, step_s, (last_s - first_s) // step_s + 1, until_s)

    def index(self, measured_s: float) -> int | None:
        """The step holding ``measured_s``, or None outside the grid."""
        index = math.floor((measured_s - self.first_s) / self.step_s)
        return index if 0 <= index < self.count else None

    def times_s(self) -> list[int]:
        return [self.first_s + i * self.step_s for i in range(self.count)]

    def seconds_in(self, index: int) -> float:
        """How long step ``index`` has lasted: ``step_s``, except the last one, which
        has lasted until now (at least one second, the buckets' own resolution)."""
        if index < self.count - 1:
            return float(self.step_s)
        elapsed_s = self.until_s - (self.first_s + index * self.step_s)
        return min(float(self.step_s), max(1.0, elapsed_s))


def add_window(
    steps: StepWindows, grid: Grid, key: tuple[str, Role], measured_s: float, window: VersionWindow
) -> None:
    """Count ``window`` (which becomes the step's own or is merged in) toward its step."""
    index = grid.index(measured_s)
    if index is None or window.empty:
        return
    by_step = steps.setdefault(key, {})
    held = by_step.get(index)
    if held is None:
        by_step[index] = window
    else:
        held.merge(window)


def bucket_payloads(
    grid: Grid, rows: Iterable[tuple[str, Role, float, Mapping[str, Any]]]
) -> StepWindows:
    """Stored bucket payloads, given as (version, role, measured_s, payload), merged by
    version, role and step; rows outside the grid are left out."""
    steps: StepWindows = {}
    for version, role, measured_s, payload in rows:
        if grid.index(measured_s) is not None:
            add_window(
                steps, grid, (version, role), measured_s, VersionWindow.from_payload(payload)
            )
    return steps


def _short(value: float) -> float:
    """Six significant digits: plenty for a chart, and a reply of 1,000 points per
    figure stays small."""
    return float(f"{value:.6g}")


def _interval(successes: int, trials: int) -> tuple[float, float]:
    interval = wilson_interval(successes, trials, INTERVAL_ALPHA)
    return _short(interval.low), _short(interval.high)


def step_figures(
    window: VersionWindow | None, seconds: float, task: str, role: Role
) -> dict[str, Figure]:
    """One step's figures: counts and rates are 0 without data; a figure that needs
    data the step lacks (latency without answers, accuracy without labels) is None."""
    w = window if window is not None else VersionWindow()
    latency = w.latency_ms
    figures: dict[str, Figure] = {
        "requests_per_s": _short(w.requests / seconds),
        "error_rate": _short(w.errors / w.requests) if w.requests else None,
        "latency_p50_ms": _short(latency.quantile(0.5)) if latency.count else None,
        "latency_p95_ms": _short(latency.quantile(0.95)) if latency.count else None,
        "latency_p99_ms": _short(latency.quantile(0.99)) if latency.count else None,
        "accuracy": None,
        "accuracy_low": None,
        "accuracy_high": None,
        "feedback": w.feedback,
        "mae": None,
    }
    # Regression labels have no "correct", classification ones no size of error.
    if w.feedback and task == "regression":
        figures["mae"] = _short(w.abs_error_sum / w.feedback)
    elif w.feedback:
        correct = min(w.correct, w.feedback)
        figures["accuracy"] = _short(correct / w.feedback)
        figures["accuracy_low"], figures["accuracy_high"] = _interval(correct, w.feedback)
    if role is Role.SHADOW:
        figures["agreement"] = figures["agreement_low"] = figures["agreement_high"] = None
        if w.compared:
            agreed = min(w.agreed, w.compared)
            figures["agreement"] = _short(agreed / w.compared)
            figures["agreement_low"], figures["agreement_high"] = _interval(agreed, w.compared)
        figures["dropped"] = w.dropped
    return figures


def role_series(
    grid: Grid, by_step: Mapping[int, VersionWindow], task: str, role: Role
) -> dict[str, list[Figure]]:
    """Every figure of one version in one role, one value per step of ``grid``."""
    names = SHADOW_FIGURES if role is Role.SHADOW else SERVED_FIGURES
    series: dict[str, list[Figure]] = {name: [] for name in names}
    for index in range(grid.count):
        figures = step_figures(by_step.get(index), grid.seconds_in(index), task, role)
        for name in names:
            series[name].append(figures[name])
    return series


def _output_counts(
    stable: VersionWindow, candidate: VersionWindow
) -> tuple[list[int], list[int]] | None:
    """Both versions' outputs over the same bins (class labels, or the output
    histogram's buckets), as the drift gates take them; None when they differ in kind."""
    if stable.outputs and candidate.outputs:
        _, control, treatment = drift.align(stable.outputs, candidate.outputs)
        return control, treatment
    if stable.outputs or candidate.outputs:
        return None
    return list(stable.output_values.counts()), list(candidate.output_values.counts())


def _output_count(window: VersionWindow) -> int:
    return sum(window.outputs.values()) if window.outputs else window.output_values.count


def step_drift(stable: VersionWindow | None, candidate: VersionWindow | None) -> float | None:
    """PSI of the candidate's outputs against the stable version's in one step, or
    None with fewer than ``DRIFT_MIN_OUTPUTS`` outputs on either side."""
    if stable is None or candidate is None:
        return None
    if min(_output_count(stable), _output_count(candidate)) < DRIFT_MIN_OUTPUTS:
        return None
    counts = _output_counts(stable, candidate)
    if counts is None:
        return None
    return _short(drift.psi(*counts).value)


def drift_series(grid: Grid, steps: StepWindows, stable: str, version: str) -> list[float | None]:
    """PSI per step of ``version`` against the stable version's served outputs: its
    served outputs where it has enough of them in the step, else its shadow outputs
    (mirrored copies of the stable version's own requests)."""
    stable_steps = steps.get((stable, Role.SERVED), {})
    served = steps.get((version, Role.SERVED), {})
    shadow = steps.get((version, Role.SHADOW), {})
    values: list[float | None] = []
    for index in range(grid.count):
        base = stable_steps.get(index)
        own = served.get(index)
        if own is None or _output_count(own) < DRIFT_MIN_OUTPUTS:
            own = shadow.get(index)
        values.append(step_drift(base, own))
    return values


@dataclass(frozen=True, slots=True)
class Series:
    """A model's figures over a grid: by version, then role, then figure name."""

    grid: Grid
    versions: dict[str, dict[str, dict[str, list[Figure]]]] = field(default_factory=dict)
    drift: dict[str, list[float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step_s": self.grid.step_s,
            "until_s": self.grid.until_s,
            "times_s": self.grid.times_s(),
            "versions": self.versions,
            "drift": self.drift,
        }


def build_series(
    grid: Grid,
    steps: StepWindows,
    *,
    stable: str,
    task: str,
    order: Sequence[str] = (),
) -> Series:
    """Figures of every version with data in ``steps`` (in ``order`` first, then by
    name), leaving out the roles a version had no data in; drift for each one that is
    not ``stable``."""
    with_data = {version for (version, _), by_step in steps.items() if by_step}
    names = [v for v in order if v in with_data] + sorted(with_data - set(order))
    versions: dict[str, dict[str, dict[str, list[Figure]]]] = {}
    for version in names:
        roles: dict[str, dict[str, list[Figure]]] = {}
        for role in Role:
            by_step = steps.get((version, role))
            if by_step:
                roles[role.value] = role_series(grid, by_step, task, role)
        versions[version] = roles
    drifts = {v: drift_series(grid, steps, stable, v) for v in names if v != stable}
    return Series(grid, versions, drifts)


# -- marks --------------------------------------------------------------------------------

_BLANKS = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def mark_text(event: Event) -> str:
    """A short line for ``event``: one line of plain text, at most ``MAX_MARK_CHARS``."""
    message = event.message
    if event.kind == "routing.changed":
        message = f"routing set by {event.actor}: {message}"
    elif event.kind.startswith("routing."):
        message = f"routing: {message}"
    text = _BLANKS.sub(" ", _CONTROL.sub("", message)).strip() or event.kind
    if len(text) > MAX_MARK_CHARS:
        text = text[: MAX_MARK_CHARS - 1].rstrip() + "…"
    return text


def mark_events(
    events: Iterable[Event], since_s: float, until_s: float, limit: int = MAX_MARKS
) -> list[Event]:
    """The events in ``[since_s, until_s]`` whose kind is a mark, the newest ``limit`` of
    them, oldest first."""
    if limit <= 0:
        return []
    chosen = [e for e in events if e.kind in MARK_KINDS and since_s <= e.at_s <= until_s]
    chosen.sort(key=lambda e: (e.at_s, e.id or 0))
    return chosen[-limit:]


def rollout_of(event: Event) -> int | None:
    """The id of the rollout an event belongs to, if it names one."""
    rollout = event.data.get("rollout")
    return rollout if isinstance(rollout, int) and not isinstance(rollout, bool) else None


def mark(event: Event, candidates: Mapping[int, str]) -> dict[str, Any]:
    """An event as a chart's mark. ``version`` is the candidate of its rollout
    (``candidates`` maps rollout ids to them), None for a change of routing by hand."""
    version = event.data.get("candidate")
    if not isinstance(version, str):
        rollout = rollout_of(event)
        version = candidates.get(rollout) if rollout is not None else None
    return {"at_s": event.at_s, "kind": event.kind, "version": version, "text": mark_text(event)}
