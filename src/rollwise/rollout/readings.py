"""Which external gates (prometheus, web) a tick must read, and what they are told (pure).

The controller reads these gates' figures before it judges (:func:`gates_to_read`), with
the context of :func:`gate_context`; a rollout spec is refused up front when a
Prometheus gate has no server to ask (:func:`check_sources`).
"""

from __future__ import annotations

from rollwise.analysis.gates import Gate
from rollwise.analysis.sources import GateContext, PrometheusSource, window_seconds
from rollwise.domain import Role
from rollwise.errors import ConfigError
from rollwise.rollout.evidence import candidate_role, measurable
from rollwise.rollout.spec import RolloutSpec
from rollwise.rollout.status import RolloutStatus
from rollwise.rollout.steps import Analyze


def spec_gates(spec: RolloutSpec) -> list[Gate]:
    """Every gate of the spec: background gates and those of its analyze steps."""
    gates = list(spec.gates)
    for step in spec.steps:
        if isinstance(step, Analyze):
            gates += [g for g in step.gates if g not in gates]
    return gates


def gates_to_read(spec: RolloutSpec, status: RolloutStatus) -> tuple[Gate, ...]:
    """The external gates :func:`rollwise.rollout.gather` judges now: none unless the
    rollout is active and the candidate sees traffic, as for every gate."""
    role = candidate_role(status)
    if role is None or not status.phase.active:
        return ()
    mirrored = role is Role.SHADOW
    gates = list(measurable(spec.gates, mirrored))
    index = status.step_index
    step = spec.steps[index] if 0 <= index < len(spec.steps) else None
    if isinstance(step, Analyze):
        gates += [g for g in measurable(step.gates, mirrored) if g not in gates]
    return tuple(g for g in gates if g.metric.external)


def gate_context(spec: RolloutSpec, status: RolloutStatus, now_s: float) -> GateContext:
    return GateContext(
        model=status.model,
        stable=status.stable,
        candidate=status.candidate,
        phase=status.phase.value,
        step=min(status.step_index + 1, len(spec.steps)),
        steps=len(spec.steps),
        window_s=window_seconds(status.measure_since_s, now_s),
    )


def check_sources(spec: RolloutSpec, *, prometheus_configured: bool) -> None:
    """Refuse a Prometheus gate that has no ``address`` when the config names no
    ``providers.prometheus.url`` either: it could never be read."""
    if prometheus_configured:
        return
    for gate in spec_gates(spec):
        source = gate.source
        if isinstance(source, PrometheusSource) and source.address is None:
            raise ConfigError(
                f"rollout: gate {gate.describe()!r} has no Prometheus server to ask: "
                "give the gate an address (address: http://prometheus:9090) or set "
                "providers.prometheus.url in the gateway config"
            )
