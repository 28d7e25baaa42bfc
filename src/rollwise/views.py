"""Terminal views of rollouts (rich renderables), shared by ``watch``, ``rollouts`` and
``demo``. They read the control API's JSON, so they show what any client would see."""

from __future__ import annotations

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
    "failed": "bold red",
}


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
        decision.get("outcome", ""),
        _num(decision.get("estimate")),
        f"[{_num(interval.get('low'))}, {_num(interval.get('high'))}]" if interval else "-",
        str(decision.get("n_stable", 0)) + (f"/{plan_n}" if plan_n else ""),
        str(decision.get("n_candidate", 0)) + (f"/{plan_n}" if plan_n else ""),
        _num(decision.get("prob_candidate_better"), 3),
    )
    return table


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
    if status["phase"] in ("progressing", "paused", "pending") and done < len(steps):
        current = f"step {done + 1}/{len(steps)}: {steps[done]}"
    else:
        current = f"{len(steps)}/{len(steps)} steps"
    bar = Table.grid(padding=(0, 1))
    bar.add_column(width=32)
    bar.add_column()
    bar.add_row(ProgressBar(total=max(len(steps), 1), completed=done, width=32), current)
    weight, mirror = status["weight"], status["mirror"]
    if status["phase"] == "promoted":
        weights = f"{status['candidate']} 100 %"
    elif status["phase"] in ("rolled_back", "failed", "validated"):
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
    experiment = status.get("experiment") or {}
    if experiment.get("decision"):
        parts.append(experiment_table(experiment["decision"], experiment.get("samples_per_arm")))
    return Group(*parts)
