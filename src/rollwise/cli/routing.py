"""The commands on a model's traffic and what it did: route, status, reload, events."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from rollwise.cli.common import TokenOption, UrlOption, connect, console, print_json


def route(
    model: Annotated[str, typer.Argument(help="model name")],
    weights: Annotated[list[str], typer.Argument(help="VERSION=PERCENT ..., summing to 100")],
    mirror: Annotated[
        list[str] | None,
        typer.Option(
            "--mirror", "-m", help="VERSION=PERCENT: copy that share of requests to a shadow"
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="abort the model's rollout in progress, then route")
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Split a model's live traffic, e.g. `rollwise route iris v1=90 v2=10 --mirror v3=50`.

    The new weights and mirrors replace the old ones; users keep their version when a
    version's share grows. Refused while a rollout of the model is in progress.
    """
    from rollwise.routing import parse_assignments

    parsed = parse_assignments(weights, "weight")
    mirrors = parse_assignments(mirror or [], "mirror")
    with connect(url, token) as client:
        routing = client.set_routing(model, parsed, mirrors, force=force)
    shown = ", ".join(f"{v}={w}%" for v, w in routing["weights"].items())
    mirrored = ", ".join(f"{v}={p}%" for v, p in routing["mirrors"].items())
    console.print(f"{model}: {shown}" + (f"; mirroring {mirrored}" if mirrored else ""))


def status(
    model: Annotated[str | None, typer.Argument(help="only this model")] = None,
    window: Annotated[int, typer.Option("--window", help="seconds of metrics to show")] = 300,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Versions, health, fleet readiness, weights, requests, errors, latency, shadow
    agreement and mirrored requests dropped, per version."""
    from rollwise.llm_status import llm_table
    from rollwise.status_table import status_notes, status_table
    from rollwise.views import waiting_lines

    with connect(url, token) as client:
        models = [client.model(model, window)] if model else client.models(window)
    if as_json:
        console.print_json(json.dumps(models))
        return
    for info in models:
        table = status_table(info)
        console.print(table)
        llm = llm_table(info)
        if llm is not None:
            console.print(llm)
        rollout = info.get("rollout")
        if rollout:
            console.print(
                f"  rollout #{rollout['id']}: {rollout['strategy']} {rollout['stable']} → "
                f"{rollout['candidate']}, {rollout['phase'].replace('_', ' ')}, step "
                f"{rollout['step']}/{rollout['steps']} — {rollout['message']}",
                highlight=False,
            )
            for line in waiting_lines(rollout.get("waiting") or []):
                console.print(f"    {line}", highlight=False, markup=False)
        for note in status_notes(info):
            console.print(f"  [yellow]{note}[/]", highlight=False)


def reload(
    model: Annotated[str, typer.Argument(help="model name")],
    version: Annotated[str, typer.Argument(help="version to load anew")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Load a version anew (after fixing its file or server) and swap it in, no restart."""
    with connect(url, token) as client:
        result = client.reload(model, version)
    console.print(f"{model} {version}: {result['health']}")


def events(
    model: Annotated[str | None, typer.Argument(help="only this model")] = None,
    limit: Annotated[int, typer.Option(help="how many of the latest events")] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON array instead of a table")
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """The latest events: routing changes, rollouts, and why they happened."""
    import datetime

    with connect(url, token) as client:
        found = client.events(model, 0, min(max(limit, 1), 1000), latest=True)
    if as_json:
        print_json(found)
        return
    table = Table(title_justify="left")
    for column in ("id", "time (UTC)", "model", "kind", "by"):
        table.add_column(column, no_wrap=True)
    table.add_column("message", ratio=1)
    for event in found:
        at = datetime.datetime.fromtimestamp(event["at_s"], tz=datetime.UTC)
        table.add_row(
            str(event["id"]),
            at.strftime("%Y-%m-%d %H:%M:%S"),
            event["model"],
            event["kind"],
            event["actor"],
            event["message"],
        )
    console.print(table)
