"""What the control API shows of a model: versions with their health here and across
the fleet, weights, mirrors, metrics of a window, and the rollout (with the gates it
waits for and how much longer each needs)."""

from __future__ import annotations

from typing import Any

from rollwise.analysis.horizon import waiting_gates
from rollwise.analysis.text_compare import win_rate_interval
from rollwise.domain import Role, VersionHealth
from rollwise.fleet import FleetReadiness
from rollwise.metrics.recorder import VersionWindow
from rollwise.rollouts import Rollout, load
from rollwise.runtime.gateway import Gateway
from rollwise.runtime.versions import VersionState


async def model_status(gateway: Gateway, name: str, window_s: float) -> dict[str, Any]:
    model = gateway.model(name)
    table = gateway.tables.get(name)
    routing = gateway.routings.get(name)
    metrics = await gateway.telemetry.version_metrics(name, window_s)
    latest = await gateway.db(gateway.store.latest_rollout, name)
    fleet = await gateway.db(gateway.fleet.of_model, name)
    effective = table.effective_weights() if table else {}
    versions = []
    for version in model.versions.values():
        state = gateway.states.get((name, version.name), VersionState(VersionHealth.LOADING))
        readiness = fleet.get(version.name)
        versions.append(
            {
                "name": version.name,
                "backend": version.backend,
                "source": version.source.value,
                "health": state.health.value,
                "reason": state.reason,
                "artifact_sha256": state.artifact_sha256,
                "fleet": fleet_view(readiness) if readiness is not None else None,
                "weight": routing.weight_of(version.name) if routing else 0,
                "effective_weight": effective.get(version.name, 0),
                "mirror": routing.mirrors.get(version.name, 0) if routing else 0,
                "served": _summary(metrics.get((version.name, Role.SERVED))),
                "shadow": _summary(metrics.get((version.name, Role.SHADOW))),
                "preview": _summary(metrics.get((version.name, Role.PREVIEW))),
            }
        )
    return {
        "name": name,
        "stable": routing.stable if routing else model.stable,
        "task": model.task,
        "source": model.source.value,
        "sticky_key": str(model.sticky_key) if model.sticky_key else None,
        "serving": bool(table and table.serving),
        "window_s": window_s,
        "versions": versions,
        "rollout": rollout_status(load(latest)) if latest is not None else None,
    }


def rollout_status(rollout: Rollout) -> dict[str, Any]:
    """The rollout's summary and, while it runs, its undecided gates with how much
    longer each needs (``horizon``, see :mod:`rollwise.analysis.horizon`)."""
    status = rollout.status
    if not status.phase.active:
        return {**rollout.summary(), "waiting": []}
    waiting = waiting_gates(status.judgement)
    experiment = status.experiment or {}
    if "horizon" in experiment:
        what = f"A/B test on {experiment.get('metric', '?')}, to its planned size"
        waiting.append({"gate": what, "horizon": experiment["horizon"]})
    return {**rollout.summary(), "waiting": waiting}


def fleet_view(readiness: FleetReadiness) -> dict[str, Any]:
    return {
        "live": len(readiness.live),
        "ready": len(readiness.ready),
        "everywhere": readiness.everywhere,
        "failed": dict(readiness.failed),
        "summary": readiness.summary(),
        "why_not": "" if readiness.everywhere else readiness.why_not(),
    }


def _summary(window: VersionWindow | None) -> dict[str, Any] | None:
    if window is None or window.empty:
        return None
    summary = window.summary()
    if window.judged:
        # The judge's verdicts as a share with its 95 % Wilson interval (ties excluded).
        summary["win_rate_interval"] = win_rate_interval(window.wins, window.judged).to_dict()
    return summary
