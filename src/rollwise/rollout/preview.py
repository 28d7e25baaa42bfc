"""What a rollout spec will do, for a dry run: each step in words, and for an A/B test
the samples it plans per arm and how long they take at the traffic seen lately."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rollwise.analysis.gates import Metric
from rollwise.rollout.spec import RolloutSpec, planned_samples
from rollwise.rollout.steps import Experiment, describe_step

LABELLED_METRICS = (Metric.ACCURACY, Metric.MAE, Metric.RMSE, Metric.REWARD)
"""Metrics whose samples are labelled answers (feedback), not requests."""


def preview_steps(
    spec: RolloutSpec, requests_per_s: float, labels_per_s: float
) -> list[dict[str, Any]]:
    """One entry per step: its description and, for an A/B test, its plan and the
    expected time to reach it at the given rates (None while nothing is measured)."""
    shown: list[dict[str, Any]] = []
    for number, step in enumerate(spec.steps, 1):
        entry: dict[str, Any] = {"step": number, "text": describe_step(step)}
        if isinstance(step, Experiment):
            samples = planned_samples(step)
            rate = labels_per_s if step.metric in LABELLED_METRICS else requests_per_s
            # The smaller arm decides when both have their samples.
            per_arm_rate = rate * min(step.split, 100 - step.split) / 100
            entry["samples_per_arm"] = samples
            entry["rate_per_s"] = rate
            entry["expected_s"] = samples / per_arm_rate if per_arm_rate > 0 else None
        shown.append(entry)
    return shown


def traffic_rates(totals: Mapping[str, tuple[int, int]], window_s: float) -> tuple[float, float]:
    """(requests/s, labels/s) from per-version (requests, labels) over ``window_s``."""
    requests = sum(r for r, _ in totals.values())
    labels = sum(f for _, f in totals.values())
    return requests / window_s, labels / window_s
