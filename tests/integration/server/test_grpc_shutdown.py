"""The gRPC port's life in a real process: on SIGTERM it takes no new call and answers
those in flight before the gateway stops; workers of ``serve --workers`` share it.

The model under test holds every call until the test lets it go (``support.gated_models``),
so "while calls are in flight" is a fact the test arranges, not a race it hopes to win.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from support.gated_models import arrived, release
from support.gateway import GatewayProcess, eventually, free_port, workers_of
from support.grpc_calls import channel, refusal, rows_request

TESTS = Path(__file__).resolve().parents[2]
IN_FLIGHT = 3
ROWS = [[1.0, 2.0]]


def gated_config(gate: Path, grpc_port: int) -> dict[str, Any]:
    return {
        "store": "sqlite:///state.db",
        "server": {"grpc_port": grpc_port},
        "models": {
            "m": {
                "stable": "held",
                "versions": {
                    "held": {
                        "backend": "python",
                        "target": "support.gated_models:Gated",
                        "factory": True,
                        "kwargs": {"folder": str(gate)},
                        "python_path": str(TESTS),
                        "timeout_s": 60,
                    }
                },
            }
        },
    }


@contextlib.contextmanager
def gated_gateway(
    directory: Path, http: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """``rollwise serve --http HTTP`` of the held model with a gRPC port, logging at info."""
    gate = directory / "gate"
    gate.mkdir()
    grpc_port = free_port()
    config = directory / "rollwise.yaml"
    config.write_text(yaml.safe_dump(gated_config(gate, grpc_port)))
    address = f"127.0.0.1:{grpc_port}"
    log = directory / "gateway.log"
    args = [
        sys.executable, "-m", "rollwise.cli", "serve", "--config", str(config),
        "--port", str(free_port()), "--insecure-dev", "--log-level", "info", "--http", http,
    ]  # fmt: skip
    with log.open("ab") as sink:
        process = subprocess.Popen(args, cwd=directory, stdout=sink, stderr=subprocess.STDOUT)
    try:
        eventually(lambda: "listening for gRPC" in log.read_text(), timeout_s=60)
        yield process, address, gate
    finally:
        # A test that failed midway must not leave its calls held.
        release(gate)
        if process.poll() is None:
            process.kill()
            process.wait()


def refuses_calls(address: str) -> bool:
    """Whether a new call is refused at once (UNAVAILABLE: nothing listens any more).

    A call taken just before the stop is held by the model: it waits a second, not the
    whole test, and counts as "not yet".
    """
    with channel(address) as fresh:
        try:
            fresh.infer(rows_request("m", ROWS), timeout_s=1.0)
        except grpc.RpcError as error:
            return refusal(error)[0] is grpc.StatusCode.UNAVAILABLE
    return False


@pytest.mark.parametrize("http", ["rollwise", "uvicorn"])
def test_sigterm_answers_the_calls_in_flight_and_takes_no_new_one(
    tmp_path: Path, http: str
) -> None:
    # The pool is left last, once the gateway no longer holds its calls.
    with (
        ThreadPoolExecutor(IN_FLIGHT) as pool,
        gated_gateway(tmp_path, http) as (process, address, gate),
        channel(address) as held,
    ):
        calls: list[Future[Any]] = [
            pool.submit(held.infer, rows_request("m", ROWS)) for _ in range(IN_FLIGHT)
        ]
        eventually(lambda: arrived(gate) == IN_FLIGHT)

        process.send_signal(signal.SIGTERM)
        eventually(lambda: refuses_calls(address))
        assert process.poll() is None
        assert not any(call.done() for call in calls)

        release(gate)
        replies = [call.result(timeout=30)[0] for call in calls]
        assert [list(r.outputs[0].contents.int64_contents) for r in replies] == [[1]] * IN_FLIGHT
        # uvicorn ends by raising the signal again once it has shut down.
        assert process.wait(timeout=30) in {0, -signal.SIGTERM}
    log = (tmp_path / "gateway.log").read_text()
    steps = ["readiness answers 503", "the gRPC port is closed", "gateway stopped"]
    at = [log.find(step) for step in steps]
    assert -1 not in at and at == sorted(at), log


def workers_config(grpc_port: int) -> dict[str, Any]:
    return {
        "store": "sqlite:///state.db",
        "server": {"workers": 2, "grpc_port": grpc_port, "heartbeat_interval_s": 0.2},
        "models": {"m": {"stable": "a", "versions": {"a": {"backend": "fake", "label": 1}}}},
    }


def listeners_of(pid: int, port: int) -> int:
    """How many sockets listening on ``port`` process ``pid`` holds (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{inode}]")
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            held += os.readlink(fd) in inodes
    return held


@pytest.mark.slow
def test_workers_share_the_grpc_port(tmp_path: Path) -> None:
    grpc_port = free_port()
    gateway = GatewayProcess(tmp_path, workers_config(grpc_port)).start()
    try:
        assert gateway.process is not None

        def both_listen() -> bool:
            workers = workers_of(gateway.process.pid) if gateway.process else set()
            return len(workers) == 2 and all(listeners_of(w, grpc_port) == 1 for w in workers)

        eventually(both_listen, timeout_s=60)
        # New connections are spread by the kernel among the workers' listeners: each
        # is answered, whichever worker took it.
        for _ in range(8):
            with channel(f"127.0.0.1:{grpc_port}") as fresh:
                reply, metadata = fresh.infer(rows_request("m", [[1.0]]))
            assert metadata["x-rollwise-version"] == "a"
            assert list(reply.outputs[0].contents.int64_contents) == [1]
    finally:
        gateway.stop()
