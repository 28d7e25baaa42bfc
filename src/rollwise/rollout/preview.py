"""What a rollout spec will do, for a dry run: each step in words; for an A/B test the
samples it plans per arm and how long they take at the traffic seen lately; for an
analysis what each gate needs before it can be judged, how long that takes, and whether
it comes before the analysis gives up.

That last comparison is the trap of low traffic: an analysis whose gates cannot reach
``min_samples`` before its time limit stays undecided and, by the default policy, rolls
back even a good candidate. The samples that arrive while the step before it pauses
count too (gates judge everything since the weights last changed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rollwise.analysis.experiment import plan_experiment
from rollwise.analysis.gates import Gate, Metric
from rollwise.analysis.horizon import samples_to_judge
from rollwise.rollout.spec import RolloutSpec, planned_samples
from rollwise.rollout.steps import (
    Analyze,
    Experiment,
    MirrorStep,
    Pause,
    Preview,
    SetWeight,
    Switch,
    describe_step,
)

LABELLED_METRICS = (Metric.ACCURACY, Metric.MAE, Metric.RMSE, Metric.REWARD)
"""Metrics whose samples are labelled answers (feedback), not requests."""


@dataclass(frozen=True, slots=True)
class _Exposure:
    """What reaches the candidate while the steps run, and for how long it has."""

    weight: int = 0
    mirror: int = 0
    preview: bool = False
    held_s: float = 0.0
    """Seconds of pauses since the weights last changed: samples gathered before an
    analysis starts."""


def preview_steps(
    spec: RolloutSpec, requests_per_s: float, labels_per_s: float
) -> list[dict[str, Any]]:
    """One entry per step: its description and, for an A/B test, its plan and the
    expected time to reach it at the given rates; for an analysis, its gates' needs
    (expected times are None while nothing is measured)."""
    shown: list[dict[str, Any]] = []
    exposure = _Exposure()
    for number, step in enumerate(spec.steps, 1):
        entry: dict[str, Any] = {"step": number, "text": describe_step(step)}
        if isinstance(step, SetWeight):
            exposure = _Exposure(step.weight, 0 if step.weight else exposure.mirror)
        elif isinstance(step, MirrorStep):
            exposure = _Exposure(exposure.weight, step.percent, exposure.preview)
        elif isinstance(step, Preview):
            exposure = _Exposure(0, step.mirror, preview=True)
        elif isinstance(step, Switch):
            exposure = _Exposure(100)
        elif isinstance(step, Pause) and step.duration_s is not None:
            held = exposure.held_s + step.duration_s
            exposure = _Exposure(exposure.weight, exposure.mirror, exposure.preview, held)
        elif isinstance(step, Experiment):
            entry.update(_experiment(step, requests_per_s, labels_per_s))
        elif isinstance(step, Analyze):
            entry.update(_analysis(spec, step, exposure, requests_per_s, labels_per_s))
        shown.append(entry)
    return shown


def _experiment(step: Experiment, requests_per_s: float, labels_per_s: float) -> dict[str, Any]:
    samples = planned_samples(step)
    rate = labels_per_s if step.metric in LABELLED_METRICS else requests_per_s
    # The smaller arm decides when both have their samples.
    per_arm_rate = rate * min(step.split, 100 - step.split) / 100
    note = ""
    if step.baseline is not None:
        # Only a given baseline can sit so near 0 or 1 that the plan picks a direction.
        note = plan_experiment(
            step.metric, baseline=step.baseline, mde=step.mde, alpha=step.alpha, power=step.power
        ).note
    return {
        "samples_per_arm": samples,
        "rate_per_s": rate,
        "expected_s": samples / per_arm_rate if per_arm_rate > 0 else None,
        "note": note,
    }


def _analysis(
    spec: RolloutSpec,
    step: Analyze,
    exposure: _Exposure,
    requests_per_s: float,
    labels_per_s: float,
) -> dict[str, Any]:
    gates = [_gate(g, exposure, requests_per_s, labels_per_s) for g in step.gates]
    times = [g["expected_s"] for g in gates]
    expected = max(times) if times and all(t is not None for t in times) else None
    limit_s = step.max_duration_s or spec.rollback.on_inconclusive_after_s
    return {
        "gates": gates,
        "expected_s": expected,
        "held_s": exposure.held_s,
        "limit_s": limit_s,
        "limit_key": "rollback.on_inconclusive_after_s"
        if step.max_duration_s is None
        else "the analysis's own time limit",
        "on_inconclusive": spec.rollback.on_inconclusive.value,
        "late": expected is not None and expected > exposure.held_s + limit_s,
        "preview_only": exposure.preview and not exposure.mirror,
    }


def _gate(
    gate: Gate, exposure: _Exposure, requests_per_s: float, labels_per_s: float
) -> dict[str, Any]:
    """What one gate needs per arm, and the rate of its slowest arm at this exposure."""
    share = _slowest_share(gate, exposure)
    rate = labels_per_s if gate.metric in LABELLED_METRICS else requests_per_s
    arm_rate = rate * share
    samples = samples_to_judge(gate)
    return {
        "gate": gate.describe(),
        "samples": samples,
        "rate_per_s": arm_rate,
        "expected_s": samples / arm_rate if arm_rate > 0 else None,
    }


def _slowest_share(gate: Gate, exposure: _Exposure) -> float:
    """The share of traffic that reaches the arm that fills slowest."""
    if gate.metric is Metric.SHADOW_AGREEMENT:
        return exposure.mirror / 100
    if exposure.weight:
        candidate = exposure.weight / 100
    elif exposure.mirror:
        candidate = exposure.mirror / 100
    else:
        # Preview requests only (an operator's), or nothing at all: no rate to expect.
        candidate = 0.0
    compares = gate.bound.relative or gate.metric in (Metric.DRIFT_PSI, Metric.DRIFT_KS)
    stable = (100 - exposure.weight) / 100
    return min(candidate, stable) if compares else candidate


def traffic_rates(totals: Mapping[str, tuple[int, int]], window_s: float) -> tuple[float, float]:
    """(requests/s, labels/s) from per-version (requests, labels) over ``window_s``."""
    requests = sum(r for r, _ in totals.values())
    labels = sum(f for _, f in totals.values())
    return requests / window_s, labels / window_s
