"""Terminal views (rich renderables) of rollouts, shared by ``watch``, ``rollouts`` and
``demo``, and of versions, replicas and events for ``versions ls``, ``replicas`` and
``deploy``. They read the control API's JSON, so they show what any client would see;
times are passed in, so each view is a plain function of its input."""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

PHASE_STYLE = {
    "pending": "dim",
    "progressing": "cyan",
    "paused": "yellow",
    "promoted": "bold green",
    "validated": "bold green",
    "rolled_back": "bold red",
    "no_difference": "bold yellow",
    "inconclusive": "bold yellow",
    "failed": "bold red",
}
ACTIVE = ("pending", "progressing", "paused")


def phase_text(phase: str) -> Text:
    return Text(phase.replace("_", " "), style=PHASE_STYLE.get(phase, ""))


def rollouts_table(rollouts: Sequence[Mapping[str, Any]]) -> Table:
    """One line per rollout: model, strategy, phase, step, weights."""
    table = Table(title_justify="left")
    for column in ("id", "model", "strategy", "phase", "step", "stable", "candidate", "weights"):
        table.add_column(column, no_wrap=True)
    table.add_column("why", ratio=1)
    for r in rollouts:
        weights = f"{100 - r['weight']}/{r['weight']}"
        if r.get("mirror"):
            weights += f" (mirror {r['mirror']}%)"
        table.add_row(
            str(r["id"]),
            r["model"],
            r["strategy"],
            phase_text(r["phase"]),
            f"{r['step']}/{r['steps']}",
            r["stable"],
            r["candidate"],
            weights,
            r.get("message", ""),
        )
    return table


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


def gates_table(judgement: Mapping[str, Any], title: str) -> Table:
    """A judgement's gates: metric, bound, both values, estimate and interval, verdict."""
    table = Table(title=title, title_justify="left", show_edge=False)
    for column in ("gate", "stable", "candidate", "estimate", "interval", "n", "verdict"):
        table.add_column(column, no_wrap=True, justify="left" if column == "gate" else "right")
    for gate in judgement.get("gates", []):
        interval = gate.get("interval") or {}
        low, high = interval.get("low"), interval.get("high")
        verdict = gate.get("verdict", "")
        style = {"pass": "green", "fail": "red"}.get(verdict, "yellow")
        table.add_row(
            gate.get("description") or gate.get("gate", ""),
            _num(gate.get("stable_value")),
            _num(gate.get("candidate_value")),
            _num(gate.get("estimate")),
            f"[{_num(low)}, {_num(high)}]" if interval else "-",
            f"{gate.get('n_stable', 0)}/{gate.get('n_candidate', 0)}",
            Text(verdict, style=style),
        )
    srm = judgement.get("srm")
    if srm:
        table.add_row(
            "sample ratio",
            str(srm["observed"][0]),
            str(srm["observed"][1]),
            "-",
            f"p = {_num(srm['p_value'], 3)}",
            "",
            Text("mismatch" if srm["mismatch"] else "ok", style="red" if srm["mismatch"] else ""),
        )
    return table


def experiment_table(decision: Mapping[str, Any], plan_n: int | None) -> Table:
    table = Table(title="A/B test", title_justify="left", show_edge=False)
    for column in ("outcome", "effect", "interval", "n stable", "n candidate", "P(better)"):
        table.add_column(column, no_wrap=True)
    interval = decision.get("interval") or {}
    table.add_row(
        str(decision.get("outcome", "")).replace("_", " "),
        _num(decision.get("estimate")),
        f"[{_num(interval.get('low'))}, {_num(interval.get('high'))}]" if interval else "-",
        str(decision.get("n_stable", 0)) + (f"/{plan_n}" if plan_n else ""),
        str(decision.get("n_candidate", 0)) + (f"/{plan_n}" if plan_n else ""),
        _num(decision.get("prob_candidate_better"), 3),
    )
    return table


def horizon_text(horizon: Mapping[str, Any]) -> str:
    """How much longer a gate needs, in words (see ``rollwise.analysis.horizon``)."""
    more = horizon.get("more")
    if more is None:
        why = horizon.get("why")
        return "cannot tell how many more samples it needs" + (f" ({why})" if why else "")
    amount = f"at least {more:,}" if horizon.get("at_least") else f"~{more:,}"
    expected = horizon.get("expected_s")
    when = (
        f"~{duration_text(expected)} at the current rate"
        if expected is not None
        else "none arrived yet, so no expected time"
    )
    return f"needs {amount} more samples ({when})"


def waiting_lines(waiting: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per undecided gate: what it is and how much longer it needs."""
    return [
        f"{w['gate']}: {horizon_text(w['horizon']) if w.get('horizon') else 'undecided'}"
        for w in waiting
    ]


def rollout_view(rollout: Mapping[str, Any]) -> RenderableType:
    """A rollout in detail: header, progress through its steps, weights, gate figures."""
    status = rollout["status"]
    steps = rollout["plan_text"]
    done = min(status["step_index"], len(steps))
    header = Text.assemble(
        (f"{rollout['model']}", "bold"),
        f"  {rollout['strategy']} {status['stable']} → {status['candidate']}  ",
        phase_text(status["phase"]),
    )
    current = ""
    if status["phase"] in ACTIVE and done < len(steps):
        current = f"step {done + 1}/{len(steps)}: {steps[done]}"
    elif status["phase"] in ("promoted", "validated") or done >= len(steps):
        current = f"{len(steps)}/{len(steps)} steps"
    else:
        # Ended early (rolled back, failed, an A/B test without a winner): the step it
        # ended in, as `rollouts` shows.
        current = f"ended at step {done + 1}/{len(steps)}"
    bar = Table.grid(padding=(0, 1))
    bar.add_column(width=32)
    bar.add_column()
    bar.add_row(ProgressBar(total=max(len(steps), 1), completed=done, width=32), current)
    weight, mirror = status["weight"], status["mirror"]
    if status["phase"] == "promoted":
        weights = f"{status['candidate']} 100 %"
    elif status["phase"] not in ACTIVE:
        weights = f"{status['stable']} 100 %"
    else:
        weights = f"{status['stable']} {100 - weight} % · {status['candidate']} {weight} %"
        if mirror:
            weights += f" · mirror {mirror} %"
    parts: list[RenderableType] = [
        header,
        bar,
        Text(f"weights: {weights}"),
        Text(status.get("message", ""), style="dim"),
    ]
    judgement = status.get("judgement") or {}
    if judgement.get("step"):
        parts.append(gates_table(judgement["step"], "analysis"))
    elif judgement.get("background"):
        parts.append(gates_table(judgement["background"], "gates"))
    shown = judgement.get("step") or judgement.get("background") or {}
    if status["phase"] in ACTIVE:
        # Under the table: how much longer each undecided gate needs.
        waiting = [
            {"gate": g.get("description") or g.get("gate", ""), "horizon": g.get("horizon")}
            for g in shown.get("gates", [])
            if g.get("verdict") == "inconclusive"
        ]
        parts.extend(Text(line, style="yellow") for line in waiting_lines(waiting))
    experiment = status.get("experiment") or {}
    if experiment.get("decision"):
        parts.append(experiment_table(experiment["decision"], experiment.get("samples_per_arm")))
    if status["phase"] in ACTIVE and experiment.get("horizon"):
        line = f"A/B test: {horizon_text(experiment['horizon'])} to its planned size, at most"
        parts.append(Text(line, style="yellow"))
    return Group(*parts)


# -- versions, replicas and events -------------------------------------------------------

HEALTH_STYLE = {"ready": "green", "loading": "yellow", "failed": "bold red", "unloaded": "dim"}
HEALTH_ORDER = ("ready", "loading", "failed", "unloaded")


def duration_text(seconds: float | None) -> str:
    """A duration for people: ``42 s``, ``5 min``, ``3 h 20 min``, ``2 d 4 h``."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = max(0, round(seconds))
    if s < 120:
        return f"{s} s"
    minutes = s // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def fleet_text(fleet: Mapping[str, Any] | None) -> str:
    """A version's readiness on the fleet, e.g. ``ready on 2/3 replicas``."""
    if not fleet:
        return "-"
    summary = fleet.get("summary")
    if summary:
        return str(summary)
    live = int(fleet.get("live") or 0)
    if not live:
        return "no live replica"
    return f"ready on {fleet.get('ready', 0)}/{live} replica{'' if live == 1 else 's'}"


def replica_states_text(replicas: Sequence[Mapping[str, Any]]) -> str:
    """How many replicas hold a version in each state, e.g. ``2 ready, 1 loading``."""
    counts: dict[str, int] = {}
    for replica in replicas:
        health = str(replica.get("health") or "unknown")
        counts[health] = counts.get(health, 0) + 1
    order = [h for h in HEALTH_ORDER if h in counts] + sorted(set(counts) - set(HEALTH_ORDER))
    return ", ".join(f"{counts[h]} {h}" for h in order) or "-"


def _short(digest: Any) -> str:
    return str(digest)[:12] if digest else "-"


def versions_table(versions: Sequence[Mapping[str, Any]]) -> Table:
    """One line per version: model, name, source, backend, artifact digest, readiness on
    the fleet and the replicas' load states."""
    table = Table(title_justify="left")
    for column in ("model", "version", "source", "backend", "sha256", "fleet"):
        table.add_column(column, no_wrap=True)
    table.add_column("replicas", ratio=1)
    for v in versions:
        fleet = v.get("fleet") or {}
        style = "green" if fleet.get("everywhere") else ("red" if fleet.get("failed") else "")
        table.add_row(
            str(v.get("model", "")),
            str(v.get("name", "")),
            str(v.get("source", "-")),
            str(v.get("backend", "-")),
            _short(v.get("artifact_sha256")),
            Text(fleet_text(fleet), style=style),
            replica_states_text(v.get("replicas") or []),
        )
    return table


def version_problems(versions: Sequence[Mapping[str, Any]]) -> list[str]:
    """Why versions are not ready everywhere: each failed replica with its error."""
    lines = []
    for v in versions:
        failed = (v.get("fleet") or {}).get("failed") or {}
        for replica, error in sorted(failed.items()):
            lines.append(f"{v.get('model')} {v.get('name')} failed on {replica}: {error}")
    return lines


def replicas_table(replicas: Sequence[Mapping[str, Any]], now_s: float) -> Table:
    """One line per replica: id, host, pid, up for, last seen, live, versions ready."""
    table = Table(title_justify="left")
    for column in ("id", "host", "pid", "up for", "last seen", "live", "versions ready"):
        table.add_column(column, no_wrap=True, justify="right" if column == "pid" else "left")
    for r in replicas:
        states = dict(r.get("versions") or {})
        ready = sum(1 for state in states.values() if state == "ready")
        if r.get("stopped"):
            live = Text("stopped", style="dim")
        elif r.get("live"):
            live = Text("yes", style="green")
        else:
            live = Text("no", style="red")
        started, seen = r.get("started_at_s"), r.get("last_seen_s")
        # A stopped replica was up until it was last seen, not until now.
        until = seen if r.get("stopped") and seen is not None else now_s
        table.add_row(
            str(r.get("id", "")),
            str(r.get("host", "")),
            str(r.get("pid", "")),
            duration_text(until - started) if started is not None else "-",
            f"{duration_text(now_s - seen)} ago" if seen is not None else "-",
            live,
            f"{ready}/{len(states)}",
        )
    return table


def event_line(event: Mapping[str, Any]) -> str:
    """An event as one line: UTC time, kind and message."""
    at = datetime.datetime.fromtimestamp(float(event.get("at_s") or 0), tz=datetime.UTC)
    return f"{at:%H:%M:%S} {event.get('kind', '')}: {event.get('message', '')}"
