"""The commands that run processes: the gateway, the controller alone, the demo, the example."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rollwise.cli.common import console, err
from rollwise.errors import ConfigError
from rollwise.logtext import setup_logging

if TYPE_CHECKING:
    from rollwise.config import GatewayConfig
    from rollwise.server.worker_policy import WorkersSetting


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
    workers: Annotated[
        str | None,
        typer.Option(
            "--workers",
            help="worker processes on the one port, each a replica: a number, or auto "
            "for one per CPU [default: from config, 1]",
        ),
    ] = None,
    listen_fd: Annotated[int | None, typer.Option("--listen-fd", hidden=True)] = None,
    supervisor_fd: Annotated[int | None, typer.Option("--supervisor-fd", hidden=True)] = None,
) -> None:
    """Run the gateway: every version of every model behind one routed endpoint.

    With more than one worker, this process supervises them: SIGHUP restarts them one
    at a time with the config read again, SIGTERM or SIGINT stops them all.
    """
    from rollwise.config import load_config
    from rollwise.server.worker_policy import parse_workers, workers_for
    from rollwise.server.worker_process import cpus

    setup_logging(log_level)
    loaded = load_config(config)
    host = host or loaded.server.host
    port = port if port is not None else loaded.server.port
    if listen_fd is not None and supervisor_fd is not None:
        _serve_as_worker(loaded, host, insecure_dev, log_level, http, listen_fd, supervisor_fd)
        return
    try:
        option = None if workers is None else parse_workers(workers)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--workers") from None
    if workers_for(option or loaded.server.workers, cpus()) > 1:
        _supervise(config, loaded, host, port, insecure_dev, log_level, http, option)
        return
    # Imported only here and in workers: the supervisor loads no models.
    from rollwise.server.app import run

    run(loaded, host=host, port=port, insecure_dev=insecure_dev, log_level=log_level, server=http)
    _exit_past_hung_models()


def _supervise(
    config: Path,
    loaded: GatewayConfig,
    host: str,
    port: int,
    insecure_dev: bool,
    log_level: str,
    http: str,
    option: WorkersSetting | None,
) -> None:
    """Run the supervisor of ``serve --workers N``; each worker is this command again.
    ``option``: ``--workers`` as given, which wins over the config's (also on SIGHUP)."""
    from rollwise.config import is_loopback
    from rollwise.server.supervisor import Supervisor

    if os.name != "posix":
        raise ConfigError("serve --workers needs a POSIX system (its workers inherit a socket)")
    # Refused here once, as the gateway would, rather than by every worker.
    if http not in ("rollwise", "uvicorn"):
        raise ConfigError(f"unknown HTTP server {http!r}: choose rollwise or uvicorn")
    if insecure_dev and not is_loopback(host):
        raise ConfigError(
            "--insecure-dev only works on a loopback address; "
            f"refusing to serve {host!r} without tokens"
        )
    path = config.resolve()

    def command(listen_fd: int, supervisor_fd: int) -> list[str]:
        args = [
            sys.executable, "-m", "rollwise.cli", "serve", "--config", str(path),
            "--host", host, "--log-level", log_level, "--http", http,
            "--listen-fd", str(listen_fd), "--supervisor-fd", str(supervisor_fd),
        ]  # fmt: skip
        return [*args, "--insecure-dev"] if insecure_dev else args

    Supervisor(
        config_path=path,
        config=loaded,
        host=host,
        port=port,
        command=command,
        workers=option,
    ).run()


def _serve_as_worker(
    loaded: GatewayConfig,
    host: str,
    insecure_dev: bool,
    log_level: str,
    http: str,
    listen_fd: int,
    supervisor_fd: int,
) -> None:
    """One worker of ``serve --workers N``: the gateway on the supervisor's socket."""
    import logging
    import socket

    from rollwise.logtext import EscapingFormatter
    from rollwise.server.app import run
    from rollwise.server.worker import SupervisorLink

    # Workers share the supervisor's stderr: each line says which process wrote it.
    for handler in logging.getLogger().handlers:
        handler.setFormatter(EscapingFormatter("%(levelname)s %(name)s[%(process)d]: %(message)s"))
    link = SupervisorLink(supervisor_fd)
    link.watch()
    sock = socket.socket(fileno=listen_fd)
    run(
        loaded,
        host=host,
        port=sock.getsockname()[1],
        insecure_dev=insecure_dev,
        log_level=log_level,
        server=http,
        sock=sock,
        on_ready=link.ready,
        on_hangup=link.hangup,
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
    from rollwise.notifications.sender import Notifier
    from rollwise.providers.reader import GateReader
    from rollwise.readiness import StoreReadiness
    from rollwise.store import open_store

    setup_logging(log_level)
    loaded = load_config(config)
    store = open_store(loaded.store_url)
    notifier = Notifier(loaded.notifications).start()
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
            notify=notifier.publish,
            gate_reader=GateReader(loaded.providers),
        )
        signal.signal(signal.SIGTERM, lambda *_: loop.stop())
        signal.signal(signal.SIGINT, lambda *_: loop.stop())
        console.print(f"controller {loop.holder} watching rollouts in {store.url}")
        loop.run()
    finally:
        notifier.close()
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
