"""``rollwise demo``: the whole story of safe model rollouts on one machine.

It trains three iris models (a stable v1, a better v2, a faulty v3), starts a real
gateway on SQLite with the controller inside it, keeps synthetic users sending
requests and, a moment later, their true labels, and runs three rollouts one after
another — a shadow of v2, a canary v1 → v2 that is promoted, and a linear v2 → v3 that
the gates roll back on their own — with a live view and a summary of every decision.

Every run starts from a fresh database: with ``--dir`` the models, config and log are
kept in that folder, but the database a previous run left there (``rollwise.db`` and
its ``-wal``/``-shm`` files) is deleted first, so the story can be told again. Each
rollout has a deadline (``ACT_DEADLINE_S``): one still going by then is aborted and the
demo fails. Ctrl-C or SIGTERM stop the demo cleanly, its gateway included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from rollwise.client import Client
from rollwise.demo.traffic import TrafficGenerator, TrafficStats
from rollwise.errors import RollwiseError
from rollwise.views import phase_text, rollout_view

SAFETY_GATES: list[dict[str, Any]] = [
    {"metric": "error_rate", "max_increase": 0.02, "min_samples": 100},
    {"metric": "latency_p95_ms", "max_ratio": 3.0, "min_samples": 100},
    {"metric": "accuracy", "max_decrease": 0.05, "min_samples": 100},
]
"""Errors, tail latency and accuracy from feedback, each against the stable version."""

ROLLOUTS: list[tuple[str, dict[str, Any]]] = [
    (
        "shadow v2: answers compared with v1, seen by nobody",
        {
            "model": "iris",
            "candidate": "v2",
            "strategy": "shadow",
            "shadow": {"mirror": 100, "max_duration_s": 60},
            "gates": [
                *SAFETY_GATES,
                {"metric": "shadow_agreement", "min": 0.7, "min_samples": 100},
            ],
        },
    ),
    (
        "canary v1 → v2: 20 %, 50 %, then all",
        {
            "model": "iris",
            "candidate": "v2",
            "strategy": "canary",
            "canary": {"weights": [20, 50], "pause_s": 4},
            "gates": SAFETY_GATES,
            "rollback": {"on_inconclusive_after_s": 45},
        },
    ),
    (
        "linear v2 → v3: +25 % every 4 s (v3 is slow and fails 5 % of calls)",
        {
            "model": "iris",
            "candidate": "v3",
            "strategy": "linear",
            "linear": {"increment": 25, "interval_s": 4},
            "gates": SAFETY_GATES,
            "rollback": {"on_inconclusive_after_s": 45},
        },
    ),
]


ACT_DEADLINE_S = 180.0
"""The longest one rollout of the story may take (they take well under a minute) before
the demo aborts it and fails."""

LABELLER = "demo-labeller"
"""The name of the demo's ``feedback`` token: the synthetic labelling pipeline posts
its labels with it, as a real one would (ground truth decides rollouts)."""

DATABASE = "rollwise.db"
"""The demo gateway's SQLite database, in the demo's folder (see ``_config``)."""


@dataclass
class Act:
    title: str
    spec: dict[str, Any]
    rollout: dict[str, Any] | None = None
    started_s: float = 0.0
    ended_s: float = 0.0
    failed_before: int = 0
    failed_after: int = 0


def _config(folder: Path, port: int) -> Path:
    from rollwise.example_models import write_example

    path = write_example(folder)
    config = yaml.safe_load(path.read_text())
    # Short intervals so the story fits in a couple of minutes; the defaults suit
    # production, where steps last minutes or hours.
    config["server"] = {
        "host": "127.0.0.1",
        "port": port,
        "flush_interval_s": 0.5,
        "routing_poll_interval_s": 0.5,
    }
    config["controller"] = {"interval_s": 0.5, "settle_s": 1.0, "lease_ttl_s": 5.0}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fresh_database(folder: Path) -> None:
    """Delete the database a previous run left in ``folder``: each story starts anew."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        (folder / f"{DATABASE}{suffix}").unlink(missing_ok=True)


def _dies_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when the demo dies (Linux only).

    That covers what no ``finally`` can: the demo killed with SIGKILL. The signal is
    sent when the thread that started the child ends, so the child must be started
    from the main thread (the event loop's), not from a worker thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:  # the demo died before the line above took effect
            os._exit(1)

    return preexec


def _start_gateway(config: Path, log_path: Path, feedback_token: str) -> subprocess.Popen[bytes]:
    # The labeller's token goes through the environment, so its secret is never
    # written to the demo folder; tokens already in ROLLWISE_TOKENS are kept.
    tokens = ",".join(
        t
        for t in (os.environ.get("ROLLWISE_TOKENS", ""), f"{LABELLER}:feedback:{feedback_token}")
        if t
    )
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "rollwise.cli", "serve", "-c", str(config), "--insecure-dev"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "ROLLWISE_TOKENS": tokens},
            preexec_fn=_dies_with_parent(),
        )


def _stop_gateway(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Stopped(RollwiseError):
    """The demo got SIGTERM and stopped (its gateway with it)."""


@contextlib.contextmanager
def _sigterm_stops(task: asyncio.Task[Any]) -> Iterator[Callable[[], bool]]:
    """While inside, SIGTERM cancels ``task`` (once), so that its ``finally`` runs.

    Yields a function telling whether SIGTERM came. Outside the main thread, where
    signal handlers cannot be set, SIGTERM keeps its default effect.
    """
    loop = asyncio.get_running_loop()
    came = False

    def on_sigterm() -> None:
        nonlocal came
        if not came:
            came = True
            task.cancel("SIGTERM")

    previous = signal.getsignal(signal.SIGTERM)
    try:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    except (ValueError, RuntimeError, NotImplementedError):
        yield lambda: False
        return
    try:
        yield lambda: came
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        with contextlib.suppress(ValueError, TypeError, OSError):
            signal.signal(signal.SIGTERM, previous)


async def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=url, timeout=2.0) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RollwiseError(
                    f"the demo gateway exited with code {process.returncode}; see {log_path}"
                )
            try:
                if (await http.get("/v2/health/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RollwiseError(f"the demo gateway did not become ready in 60 s; see {log_path}")


def _traffic_line(stats: TrafficStats) -> Text:
    versions = "  ".join(f"{v}: {n}" for v, n in sorted(stats.by_version.items()))
    failed = Text(f"failed {stats.failed}", style="red" if stats.failed else "")
    return Text.assemble(
        ("traffic ", "bold"),
        f"{stats.requests_per_s:5.0f} req/s  sent {stats.sent}  ",
        failed,
        f"  labels {stats.feedback_sent}  ·  {versions}",
    )


def _summary(acts: list[Act]) -> Table:
    table = Table(title="what happened", title_justify="left")
    for column in ("rollout", "result", "took", "failed requests"):
        table.add_column(column, no_wrap=True)
    table.add_column("why", ratio=1)
    for act in acts:
        if act.rollout is None:
            continue
        status = act.rollout["status"]
        table.add_row(
            act.title.split(":")[0],
            phase_text(status["phase"]),
            f"{act.ended_s - act.started_s:.0f} s",
            str(act.failed_after - act.failed_before),
            status["message"],
        )
    return table


def _view(acts: list[Act], current: Act | None, stats: TrafficStats) -> RenderableType:
    parts: list[RenderableType] = [_traffic_line(stats)]
    for act in acts:
        if act.rollout is not None and act is not current:
            status = act.rollout["status"]
            parts.append(
                Text.assemble("  ✓ " if status["outcome"] == "promoted" else "  • ", act.title, " ")
                + phase_text(status["phase"])
            )
    if current is not None and current.rollout is not None:
        parts.append(Text(""))
        parts.append(Text(current.title, style="bold"))
        parts.append(rollout_view(current.rollout))
    return Group(*parts)


async def _run_act(
    act: Act,
    client: Client,
    traffic: TrafficGenerator,
    live: Live,
    acts: list[Act],
    deadline_s: float = ACT_DEADLINE_S,
) -> None:
    act.failed_before = traffic.stats.failed
    act.started_s = time.monotonic()
    act.rollout = await asyncio.to_thread(client.apply, act.spec)
    while act.rollout["status"]["phase"] in ("pending", "progressing", "paused"):
        if time.monotonic() - act.started_s > deadline_s:
            await _abort_late(act, client, deadline_s)
        live.update(_view(acts, act, traffic.stats.snapshot()))
        await asyncio.sleep(0.5)
        act.rollout = await asyncio.to_thread(client.rollout, "iris")
    act.ended_s = time.monotonic()
    act.failed_after = traffic.stats.failed
    live.update(_view(acts, None, traffic.stats.snapshot()))


async def _abort_late(act: Act, client: Client, deadline_s: float) -> None:
    """Abort a rollout past its deadline and fail the demo, saying where it was stuck."""
    assert act.rollout is not None
    status = act.rollout["status"]
    where = f"still {status['phase']}" + (f": {status['message']}" if status["message"] else "")
    model = str(act.spec["model"])
    reason = f"the demo's deadline of {deadline_s:.0f} s passed"
    try:
        await asyncio.to_thread(client.abort, model, reason)
    except RollwiseError as error:
        done = f"aborting it failed too ({error})"
    else:
        done = "the demo aborted it"
    raise RollwiseError(
        f"the rollout {act.title.split(':')[0]!r} did not end within {deadline_s:.0f} s "
        f"({where}); {done}"
    )


async def run_demo(
    *,
    folder: Path | None = None,
    port: int | None = None,
    rate_per_s: float = 150.0,
    console: Console | None = None,
    seed: int = 7,
    act_deadline_s: float = ACT_DEADLINE_S,
) -> list[dict[str, Any]]:
    """Run the story; returns the final state of each rollout (as the API shows it).

    Raises ``RollwiseError`` when a step fails or a rollout misses its deadline, and
    ``Stopped`` on SIGTERM; the gateway it started is stopped in every case.
    """
    task = asyncio.current_task()
    assert task is not None
    with _sigterm_stops(task) as sigterm_came:
        try:
            return await _run_demo(
                folder=folder,
                port=port,
                rate_per_s=rate_per_s,
                console=console or Console(),
                seed=seed,
                act_deadline_s=act_deadline_s,
            )
        except asyncio.CancelledError:
            if not sigterm_came():
                raise
            task.uncancel()
            raise Stopped("stopped by SIGTERM; the demo gateway was stopped too") from None


async def _run_demo(
    *,
    folder: Path | None,
    port: int | None,
    rate_per_s: float,
    console: Console,
    seed: int,
    act_deadline_s: float,
) -> list[dict[str, Any]]:
    temporary = None
    if folder is None:
        temporary = tempfile.TemporaryDirectory(prefix="rollwise-demo-")
        folder = Path(temporary.name)
    folder.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    url = f"http://127.0.0.1:{port}"
    console.print(f"training iris models v1, v2, v3 in {folder} …")
    process: subprocess.Popen[bytes] | None = None
    acts = [Act(title, spec) for title, spec in ROLLOUTS]
    try:
        config = await asyncio.to_thread(_config, folder, port)
        _fresh_database(folder)
        log_path = folder / "gateway.log"
        # From this (the loop's) thread: see _dies_with_parent.
        feedback_token = secrets.token_urlsafe(24)
        process = _start_gateway(config, log_path, feedback_token)
        await _wait_ready(url, process, log_path)
        console.print(f"gateway on {url} (SQLite at {folder / DATABASE}, log {log_path})")
        console.print(f"watch the rollouts live in a browser: {url}/ui")
        async with TrafficGenerator(
            url,
            "iris",
            rate_per_s=rate_per_s,
            users=1000,
            feedback_delay_s=(0.2, 1.0),
            feedback_token=feedback_token,
            rng=random.Random(seed),
        ) as traffic:
            sending = asyncio.create_task(traffic.run())
            try:
                with Client(url) as client, Live(console=console, refresh_per_second=4) as live:
                    for act in acts:
                        await _run_act(act, client, traffic, live, acts, act_deadline_s)
                traffic.stop()
                await sending
            finally:
                # On an error, Ctrl-C or SIGTERM: the traffic ends before its client closes.
                await _cancel(sending)
        console.print()
        console.print(_summary(acts))
        stats = traffic.stats
        console.print(
            f"{stats.sent} requests, {stats.failed} failed (v3's own errors while it served "
            f"a share; none from a switch), {stats.feedback_sent} labels."
        )
        return [act.rollout for act in acts if act.rollout is not None]
    finally:
        if process is not None:
            _stop_gateway(process)
        if temporary is not None:
            temporary.cleanup()


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it to end, leaving no exception unretrieved."""
    if not task.done():
        task.cancel()
        await asyncio.wait([task])
    if not task.cancelled():
        task.exception()


def outcomes(rollouts: Sequence[Mapping[str, Any]]) -> list[str]:
    """The phase each rollout ended in, in order."""
    return [str(r["status"]["phase"]) for r in rollouts]
