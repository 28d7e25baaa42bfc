"""From measured metric windows to the evidence one tick of the state machine needs.

Which figures stand for which arm:

* the stable arm is always the stable version's *served* traffic;
* the candidate arm is its served traffic while it has weight, its *preview* requests
  (an operator forcing the version) while it is previewed without mirroring, and its
  *shadow* traffic while it is only mirrored —
  so shadow agreement, shadow latency and errors, and the accuracy of the shadow's
  answers from feedback are compared with the stable version on the same requests.
  (The gateway mirrors the requests the stable version refused or failed as well, so
  the shadow's client error rate is a share of the same traffic as the stable one's.)

The sample-ratio check applies only where a split of live traffic was configured. It
counts what the split assigns: requests, or — with a sticky user key — distinct users,
since requests then follow how much each user sends and their split would show a
mismatch where routing is right.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rollwise.analysis.experiment import decide_experiment
from rollwise.analysis.external import Reading
from rollwise.analysis.gates import Gate, Metric
from rollwise.analysis.judge import Judgement, judge_step
from rollwise.analysis.summary import ArmSummary, Outputs
from rollwise.domain import Role
from rollwise.metrics.recorder import VersionWindow
from rollwise.rollout.machine import Evidence
from rollwise.rollout.spec import RolloutSpec
from rollwise.rollout.status import RolloutStatus
from rollwise.rollout.steps import Analyze, Experiment

Windows = Mapping[tuple[str, Role], VersionWindow]


def arm_summary(window: VersionWindow | None) -> ArmSummary:
    """The statistics' view of one version's measured window."""
    if window is None:
        return ArmSummary()
    outputs: Outputs | None = None
    if window.outputs:
        outputs = dict(window.outputs)
    elif window.output_values.count:
        outputs = window.output_values
    return ArmSummary(
        requests=window.requests,
        errors=window.errors,
        client_errors=window.client_errors,
        latency=window.latency_ms,
        latency_sum_ms=window.latency_sum_ms,
        feedback=window.feedback,
        correct=window.correct,
        abs_error_sum=window.abs_error_sum,
        sq_error_sum=window.sq_error_sum,
        quartic_error_sum=window.quartic_error_sum,
        outputs=outputs,
        shadow_compared=window.compared,
        shadow_agreed=window.agreed,
        llm_answers=window.llm_answers,
        ttft=window.ttft_ms,
        ttft_sum_ms=window.ttft_sum_ms,
        itl_requests=window.itl_requests,
        itl_sum_ms=window.itl_sum_ms,
        itl_sq_sum_ms=window.itl_sq_sum_ms,
        tokens_per_s_sum=window.tokens_per_s_sum,
        tokens_per_s_sq_sum=window.tokens_per_s_sq_sum,
        cost_sum=window.cost_sum,
        cost_sq_sum=window.cost_sq_sum,
        finish_length=window.finish_length,
        finish_content_filter=window.finish_content_filter,
        empty_answers=window.empty_answers,
        satisfaction=window.satisfaction,
        satisfaction_sum=window.satisfaction_sum,
        satisfaction_sq_sum=window.satisfaction_sq_sum,
        shadow_judged=window.judged,
        shadow_wins=window.wins,
    )


def candidate_role(status: RolloutStatus) -> Role | None:
    """Where the candidate's figures come from now; None while it sees no traffic."""
    if status.weight > 0:
        return Role.SERVED
    if status.mirror > 0:
        return Role.SHADOW
    if status.preview:
        return Role.PREVIEW
    return None


def arms(status: RolloutStatus, windows: Windows) -> tuple[ArmSummary, ArmSummary] | None:
    """(stable, candidate) summaries for the current exposure, or None without one."""
    role = candidate_role(status)
    if role is None:
        return None
    stable = arm_summary(windows.get((status.stable, Role.SERVED)))
    candidate = arm_summary(windows.get((status.candidate, role)))
    return stable, candidate


def measurable(gates: tuple[Gate, ...], mirrored: bool) -> tuple[Gate, ...]:
    """The gates that can be measured now: shadow agreement only while the candidate
    is mirrored (a shadow that goes on into a canary keeps its other gates)."""
    if mirrored:
        return gates
    return tuple(g for g in gates if g.metric is not Metric.SHADOW_AGREEMENT)


def users_of(status: RolloutStatus, windows: Windows) -> tuple[int, int]:
    """Distinct sticky users routed to (stable, candidate) as served traffic."""
    stable = windows.get((status.stable, Role.SERVED))
    candidate = windows.get((status.candidate, Role.SERVED))
    return (stable.users if stable else 0, candidate.users if candidate else 0)


def split_of(status: RolloutStatus) -> tuple[int, int] | None:
    """The configured (stable, candidate) split of live traffic, where there is one."""
    if 0 < status.weight < 100:
        return (100 - status.weight, status.weight)
    return None


def gather(
    spec: RolloutSpec,
    status: RolloutStatus,
    windows: Windows,
    *,
    candidate_ready: bool = True,
    candidate_problem: str = "",
    readings: Mapping[Gate, Reading] | None = None,
) -> Evidence:
    """Judge what the current step needs: background gates, the step's own gates, or
    the A/B test. ``readings`` are the external gates' figures the controller read."""
    found: dict[str, Any] = {}
    pair = arms(status, windows)
    if pair is None or not status.phase.active:
        return Evidence(candidate_ready=candidate_ready, candidate_problem=candidate_problem)
    stable, candidate = pair
    split = split_of(status)
    srm_counts = users_of(status, windows) if split and status.split_by_user else None
    mirrored = candidate_role(status) is Role.SHADOW
    background: Judgement | None = None
    gates = measurable(spec.gates, mirrored)
    if gates:
        background = judge_step(
            gates,
            stable,
            candidate,
            weights_percent=split,
            srm_counts=srm_counts,
            readings=readings,
        )
        found["background"] = background
    index = status.step_index
    step = spec.steps[index] if 0 <= index < len(spec.steps) else None
    if isinstance(step, Analyze):
        step_gates = measurable(step.gates, mirrored)
        if background is not None and step_gates == gates:
            found["step"] = background
        elif step_gates:
            found["step"] = judge_step(
                step_gates,
                stable,
                candidate,
                weights_percent=split,
                srm_counts=srm_counts,
                readings=readings,
            )
    elif isinstance(step, Experiment) and status.experiment:
        found["experiment"] = decide_experiment(
            step.metric,
            stable,
            candidate,
            mde=step.mde,
            samples_per_arm=int(status.experiment["samples_per_arm"]),
            alpha=step.alpha,
            weights_percent=split,
            min_samples=step.min_samples,
            srm_counts=srm_counts,
        )
    return Evidence(**found, candidate_ready=candidate_ready, candidate_problem=candidate_problem)
