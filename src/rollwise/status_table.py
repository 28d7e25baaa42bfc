"""The table of ``rollwise status``: one line per version of a model, read from the
control API's ``GET /api/v1/models/{name}``, so it shows what any client would see.
Plain functions of that JSON, like the other views in ``rollwise.views``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table

from rollwise.views import fleet_text


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def dropped_text(shadow: Mapping[str, Any] | None) -> str:
    """Mirrored requests a shadow dropped, and their share of those mirrored to it, e.g.
    ``12 (0.40%)``; "-" for a version that was not mirrored to."""
    if not shadow:
        return "-"
    dropped = int(shadow.get("dropped") or 0)
    mirrored = int(shadow.get("requests") or 0) + dropped
    if not dropped:
        return "0"
    return f"{dropped} ({100 * dropped / mirrored:.2f}%)"


def status_table(info: Mapping[str, Any]) -> Table:
    """One line per version of a model (the control API's ``GET /models/{name}``):
    health, fleet, weight, mirror, requests, errors, latency, shadow agreement and drops,
    accuracy."""
    table = Table(
        title=f"{info['name']}  (stable {info['stable']}, last {info['window_s']:.0f} s)",
        title_justify="left",
    )
    # Gateways that report readiness per replica add the fleet's view of each version;
    # the column is left out for those that do not.
    fleet_shown = any(v.get("fleet") for v in info["versions"])
    for column in (
        "version",
        "backend",
        "health",
        *(("fleet",) if fleet_shown else ()),
        "weight",
        "mirror",
        "requests",
        "errors",
        "p50 ms",
        "p99 ms",
        "agree",
        "dropped",
        "accuracy",
    ):
        table.add_column(
            column,
            justify="left" if column in ("version", "backend", "health", "fleet") else "right",
            no_wrap=True,
        )
    for version in info["versions"]:
        served = version["served"] or {}
        shadow = version["shadow"] or {}
        shown = served or shadow
        weight = f"{version['weight']}%"
        if version["effective_weight"] != version["weight"]:
            weight += f" (→{version['effective_weight']}%)"
        table.add_row(
            version["name"],
            version["backend"],
            version["health"],
            *((fleet_text(version.get("fleet") or {}),) if fleet_shown else ()),
            weight,
            f"{version['mirror']}%" if version["mirror"] else "-",
            str(shown.get("requests", 0)),
            str(shown.get("errors", 0)),
            _ms(shown.get("latency_p50_ms")),
            _ms(shown.get("latency_p99_ms")),
            _pct(shadow.get("agreement")) if shadow else "-",
            dropped_text(shadow),
            _pct(shown.get("accuracy")),
        )
    return table


def status_notes(info: Mapping[str, Any]) -> list[str]:
    """What a model's status table cannot show: why versions are not ready, per replica."""
    notes: list[str] = []
    for version in info["versions"]:
        if version["reason"]:
            notes.append(f"{version['name']}: {version['reason']}")
        fleet = version.get("fleet") or {}
        for replica, problem in sorted((fleet.get("failed") or {}).items()):
            notes.append(f"{version['name']}: failed on replica {replica}: {problem}")
    return notes
