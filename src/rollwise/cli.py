"""The ``rollwise`` command line: serve the gateway, route traffic, read status and events."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from rollwise.errors import RollwiseError

app = typer.Typer(
    name="rollwise",
    help="Deploy new versions of ML models safely: route, mirror, measure, roll back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", envvar="ROLLWISE_URL", help="gateway address [default: http://127.0.0.1:8080]"
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="ROLLWISE_TOKEN",
        help="bearer token (viewer or operator)",
        show_default=False,
    ),
]


def _client(url: str | None, token: str | None) -> Any:
    from rollwise.client import Client

    return Client(url, token)


@app.command()
def serve(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="gateway config file (YAML or TOML)")
    ] = Path("rollwise.yaml"),
    host: Annotated[
        str | None, typer.Option(help="address to listen on [default: from config]")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="port to listen on [default: from config]"),
    ] = None,
    insecure_dev: Annotated[
        bool,
        typer.Option("--insecure-dev", help="allow the control API without tokens (loopback only)"),
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
    http: Annotated[
        str, typer.Option("--http", help="HTTP server: rollwise (built in, leaner) or uvicorn")
    ] = "rollwise",
) -> None:
    """Run the gateway: every version of every model behind one routed endpoint."""
    import logging

    from rollwise.config import load_config
    from rollwise.server.app import run

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    # Migration chatter is noise at start-up; its warnings still show.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    loaded = load_config(config)
    run(
        loaded,
        host=host or loaded.server.host,
        port=port if port is not None else loaded.server.port,
        insecure_dev=insecure_dev,
        log_level=log_level,
        server=http,
    )
    _exit_past_hung_models()


def _exit_past_hung_models() -> None:
    """Leave at once when model calls still hold threads after the gateway stopped.

    Python joins pool threads at exit and cannot stop them, so one model that hangs
    would keep a stopped gateway alive; everything was flushed and closed by now.
    """
    import logging
    import os

    from rollwise.backends.executor import get_executor

    running = get_executor().in_flight
    if running:
        logging.getLogger("rollwise").warning(
            "%d model calls are still running; exiting without waiting for them", running
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@app.command()
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
    with _client(url, token) as client:
        routing = client.set_routing(model, parsed, mirrors, force=force)
    shown = ", ".join(f"{v}={w}%" for v, w in routing["weights"].items())
    mirrored = ", ".join(f"{v}={p}%" for v, p in routing["mirrors"].items())
    console.print(f"{model}: {shown}" + (f"; mirroring {mirrored}" if mirrored else ""))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


@app.command()
def status(
    model: Annotated[str | None, typer.Argument(help="only this model")] = None,
    window: Annotated[int, typer.Option("--window", help="seconds of metrics to show")] = 300,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Versions, health, weights, requests, errors and latency per version."""
    with _client(url, token) as client:
        models = [client.model(model, window)] if model else client.models(window)
    if as_json:
        import json

        console.print_json(json.dumps(models))
        return
    for info in models:
        table = Table(
            title=f"{info['name']}  (stable {info['stable']}, last {info['window_s']:.0f} s)",
            title_justify="left",
        )
        for column in (
            "version",
            "backend",
            "health",
            "weight",
            "mirror",
            "requests",
            "errors",
            "p50 ms",
            "p99 ms",
            "agree",
            "accuracy",
        ):
            table.add_column(
                column,
                justify="left" if column in ("version", "backend", "health") else "right",
                no_wrap=True,
            )
        notes: list[str] = []
        for version in info["versions"]:
            served = version["served"] or {}
            shadow = version["shadow"] or {}
            shown = served or shadow
            health = version["health"]
            if version["reason"]:
                notes.append(f"{version['name']}: {version['reason']}")
            weight = f"{version['weight']}%"
            if version["effective_weight"] != version["weight"]:
                weight += f" (→{version['effective_weight']}%)"
            table.add_row(
                version["name"],
                version["backend"],
                health,
                weight,
                f"{version['mirror']}%" if version["mirror"] else "-",
                str(shown.get("requests", 0)),
                str(shown.get("errors", 0)),
                _ms(shown.get("latency_p50_ms")),
                _ms(shown.get("latency_p99_ms")),
                _pct(shadow.get("agreement")) if shadow else "-",
                _pct(shown.get("accuracy")),
            )
        console.print(table)
        rollout = info.get("rollout")
        if rollout:
            console.print(
                f"  rollout #{rollout['id']}: {rollout['strategy']} {rollout['stable']} → "
                f"{rollout['candidate']}, {rollout['phase'].replace('_', ' ')}, step "
                f"{rollout['step']}/{rollout['steps']} — {rollout['message']}",
                highlight=False,
            )
        for note in notes:
            console.print(f"  [yellow]{note}[/]", highlight=False)


@app.command()
def reload(
    model: Annotated[str, typer.Argument(help="model name")],
    version: Annotated[str, typer.Argument(help="version to load anew")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Load a version anew (after fixing its file or server) and swap it in, no restart."""
    with _client(url, token) as client:
        result = client.reload(model, version)
    console.print(f"{model} {version}: {result['health']}")


@app.command()
def events(
    model: Annotated[str | None, typer.Argument(help="only this model")] = None,
    limit: Annotated[int, typer.Option(help="how many of the latest events")] = 20,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """The latest events: routing changes, rollouts, and why they happened."""
    import datetime

    with _client(url, token) as client:
        found = client.events(model, 0, min(max(limit, 1), 1000), latest=True)
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


ReasonOption = Annotated[str, typer.Option("--reason", "-r", help="why, recorded in the event log")]
ModelArgument = Annotated[str, typer.Argument(help="model name")]


@app.command()
def apply(
    file: Annotated[Path, typer.Option("--file", "-f", help="rollout spec (YAML or JSON)")],
    replace: Annotated[
        bool, typer.Option("--replace", help="abort the model's rollout in progress first")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="check the spec and show its steps; change nothing")
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Start a rollout: canary, linear, bluegreen, shadow, abtest or custom steps."""
    from rollwise.config import load_document
    from rollwise.rollout import parse_rollout_spec

    spec = load_document(file)
    # Checked here too, so a typo is reported with the file's name before any call.
    from rollwise.errors import ConfigError

    try:
        parse_rollout_spec(spec)
    except ConfigError as error:
        raise ConfigError(f"{file}: {error}") from None
    with _client(url, token) as client:
        result = client.apply(spec, replace=replace, dry_run=dry_run)
    if dry_run:
        console.print(f"{result['summary']}: valid, {len(result['steps'])} steps")
        for i, step in enumerate(result["steps"], 1):
            console.print(f"  {i}. {step}", highlight=False)
        return
    console.print(
        f"rollout #{result['id']} of {result['model']} started: {result['strategy']} "
        f"{result['stable']} → {result['candidate']} ({result['steps']} steps). "
        f"Follow it with: rollwise watch {result['model']}"
    )


@app.command()
def rollouts(
    model: Annotated[str | None, typer.Argument(help="only this model")] = None,
    active: Annotated[bool, typer.Option("--active", help="only rollouts in progress")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """All rollouts, newest first: model, strategy, phase, step, weights."""
    from rollwise.views import rollouts_table

    with _client(url, token) as client:
        found = client.rollouts(model, active=active)
    if as_json:
        import json

        console.print_json(json.dumps(found))
        return
    if not found:
        console.print("no rollouts")
        return
    console.print(rollouts_table(found))


@app.command()
def watch(
    model: ModelArgument,
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 1.0,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Follow a rollout live (step, weights, gate figures) until it ends."""
    import time

    from rich.live import Live

    from rollwise.views import rollout_view

    with _client(url, token) as client:
        rollout = client.rollout(model)
        with Live(rollout_view(rollout), console=console, refresh_per_second=4) as live:
            while rollout["status"]["phase"] in ("pending", "progressing", "paused"):
                time.sleep(max(0.1, interval))
                rollout = client.rollout(model)
                live.update(rollout_view(rollout))
    # A rollback or failure exits 3, so scripts can tell it from a promotion; an A/B
    # test that found no difference ended as planned.
    if rollout["status"]["outcome"] in ("rolled_back", "aborted", "failed"):
        raise typer.Exit(3)


def _command(
    action: str, model: str, reason: str, url: str | None, token: str | None, **extra: Any
) -> None:
    with _client(url, token) as client:
        result = getattr(client, action)(model, reason, **extra)
    status = result["status"]
    console.print(
        f"{model}: {status['phase'].replace('_', ' ')} — {status['message']}", highlight=False
    )


@app.command()
def pause(
    model: ModelArgument,
    reason: ReasonOption = "",
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Hold a rollout where it is (gates keep watching; a failure still rolls back)."""
    _command("pause", model, reason, url, token)


@app.command()
def resume(
    model: ModelArgument,
    reason: ReasonOption = "",
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Go on with a paused rollout from where its step was paused."""
    _command("resume", model, reason, url, token)


@app.command()
def promote(
    model: ModelArgument,
    full: Annotated[
        bool, typer.Option("--full", help="make the candidate stable now, skipping all steps")
    ] = False,
    reason: ReasonOption = "",
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Let the current step go (a pause, an analysis); with --full, promote at once."""
    _command("promote", model, reason, url, token, full=full)


@app.command()
def abort(
    model: ModelArgument,
    reason: ReasonOption = "",
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Stop a rollout in progress: all traffic back to the stable version at once."""
    _command("abort", model, reason, url, token)


@app.command()
def rollback(
    model: ModelArgument,
    reason: ReasonOption = "",
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """All traffic back to the previous stable version at once, also after a promotion."""
    _command("rollback", model, reason, url, token)


@app.command()
def controller(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="gateway config file (its store is used)")
    ] = Path("rollwise.yaml"),
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Run the rollout controller alone (gateways then run with controller.enabled: false).

    Any number may run: the one holding the store's lease acts, the others wait.
    """
    import logging
    import signal

    from rollwise.config import load_config
    from rollwise.controller import Controller
    from rollwise.store import open_store

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    loaded = load_config(config)
    store = open_store(loaded.store_url)
    try:
        store.migrate()
        settings = loaded.controller
        loop = Controller(
            store,
            interval_s=settings.interval_s,
            lease_ttl_s=settings.lease_ttl_s,
            settle_s=loaded.settle_s,
        )
        signal.signal(signal.SIGTERM, lambda *_: loop.stop())
        signal.signal(signal.SIGINT, lambda *_: loop.stop())
        console.print(f"controller {loop.holder} watching rollouts in {store.url}")
        loop.run()
    finally:
        store.close()


@app.command()
def demo(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir", help="keep the models, config and log here (each run starts a fresh database)"
        ),
    ] = None,
    port: Annotated[int | None, typer.Option(help="gateway port [default: a free one]")] = None,
    rate: Annotated[float, typer.Option(help="requests per second of synthetic users")] = 150.0,
) -> None:
    """The whole story in about two minutes: a shadow, a canary that is promoted, and a
    linear rollout of a faulty model that is rolled back on its own."""
    import asyncio

    from rollwise.demo.story import outcomes, run_demo

    result = asyncio.run(run_demo(folder=directory, port=port, rate_per_s=rate, console=console))
    expected = ["validated", "promoted", "rolled_back"]
    if outcomes(result) != expected:
        err.print(f"the demo ended {outcomes(result)}, not {expected}")
        raise typer.Exit(1)


@app.command()
def example(
    directory: Annotated[
        Path, typer.Argument(help="where to write the models and rollwise.yaml")
    ] = Path("rollwise-example"),
) -> None:
    """Train small example models (iris) and write a ready-to-serve config next to them."""
    from rollwise.example_models import write_example

    path = write_example(directory)
    console.print(f"wrote {path}; run: rollwise serve --config {path} --insecure-dev")


def main() -> None:
    """Entry point: one clear line and a non-zero exit code on any refusal."""
    # Standalone mode lets the command-line parser report usage errors itself (exit 2);
    # rollwise's own refusals are caught here.
    try:
        app()
    except RollwiseError as error:
        err.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
