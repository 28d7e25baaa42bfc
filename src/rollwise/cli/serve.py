"""The commands that run processes: the gateway, the controller alone, the demo, the example."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from rollwise.cli.common import console, err
from rollwise.logtext import setup_logging


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
    from rollwise.config import load_config
    from rollwise.server.app import run

    setup_logging(log_level)
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


def controller(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="gateway config file (its store is used)")
    ] = Path("rollwise.yaml"),
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Run the rollout controller alone (gateways then run with controller.enabled: false).

    Any number may run: the one holding the store's lease acts, the others wait.
    """
    import signal

    from rollwise.config import load_config
    from rollwise.controller import Controller
    from rollwise.readiness import StoreReadiness
    from rollwise.store import open_store

    setup_logging(log_level)
    loaded = load_config(config)
    store = open_store(loaded.store_url)
    try:
        store.migrate()
        settings = loaded.controller
        # Like a gateway's controller: a candidate is ready when every live replica
        # reports it ready in the store, never because this process has it loaded.
        fleet = StoreReadiness(lambda: store, heartbeat_timeout_s=loaded.server.heartbeat_timeout_s)
        loop = Controller(
            store,
            interval_s=settings.interval_s,
            lease_ttl_s=settings.lease_ttl_s,
            settle_s=loaded.settle_s,
            readiness=fleet.readiness,
            fleet=fleet,
            unload_previous=settings.unload_previous,
        )
        signal.signal(signal.SIGTERM, lambda *_: loop.stop())
        signal.signal(signal.SIGINT, lambda *_: loop.stop())
        console.print(f"controller {loop.holder} watching rollouts in {store.url}")
        loop.run()
    finally:
        store.close()


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


def example(
    directory: Annotated[
        Path, typer.Argument(help="where to write the models and rollwise.yaml")
    ] = Path("rollwise-example"),
) -> None:
    """Train small example models (iris) and write a ready-to-serve config next to them."""
    from rollwise.example_models import write_example

    path = write_example(directory)
    console.print(f"wrote {path}; run: rollwise serve --config {path} --insecure-dev")
