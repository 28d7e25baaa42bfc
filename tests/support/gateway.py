"""Start a real ``rollwise serve`` process on a free port and talk to it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

OPERATOR = "operator-secret-1"
VIEWER = "viewer-secret-1"
FEEDBACK = "feedback-secret-1"
"""A token with the ``feedback`` role: it may post labels and nothing else."""
TOKENS = f"ops:operator:{OPERATOR},watcher:viewer:{VIEWER},labeller:feedback:{FEEDBACK}"


def eventually(check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    """Wait until ``check()`` holds; fail if it still does not after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{getattr(check, '__name__', 'the condition')} never held")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayProcess:
    """A gateway subprocess with its config, port and log."""

    def __init__(
        self,
        directory: Path,
        config: Mapping[str, Any],
        *,
        insecure_dev: bool = False,
        http: str | None = None,
    ) -> None:
        self.directory = directory
        self.config_path = directory / "rollwise.yaml"
        self.config_path.write_text(yaml.safe_dump(dict(config)))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.insecure_dev = insecure_dev
        # The HTTP server (serve --http); ROLLWISE_TEST_HTTP picks it for a whole run.
        self.http = http or os.environ.get("ROLLWISE_TEST_HTTP")
        self.log_path = directory / f"gateway-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> GatewayProcess:
        args = [
            sys.executable, "-m", "rollwise.cli", "serve",
            "--config", str(self.config_path), "--port", str(self.port), "--log-level", "warning",
        ]  # fmt: skip
        if self.insecure_dev:
            args.append("--insecure-dev")
        if self.http:
            args += ["--http", self.http]
        env = {**os.environ, "ROLLWISE_TOKENS": TOKENS}
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(args, cwd=self.directory, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the gateway exited with {self.process.returncode}:\n{self.log()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v2/health/live", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the gateway did not start within {timeout_s} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def replica_id(self) -> str:
        """This process's id in the fleet, as its heartbeats record it."""
        with self.client() as client:
            replicas = client.get("/api/v1/replicas").json()["replicas"]
        return str(next(r["id"] for r in replicas if r["this"]))

    def client(self, token: str | None = OPERATOR) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@contextlib.contextmanager
def running(directory: Path, config: Mapping[str, Any], **options: Any) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(directory, config, **options).start()
    try:
        yield gateway
    finally:
        gateway.stop()


def gateway_config(models_dir: Path, **server: Any) -> dict[str, Any]:
    """A gateway with real sklearn (skops) and ONNX iris models plus fake versions."""
    return {
        "store": "sqlite:///state.db",
        "server": {"flush_interval_s": 0.2, "routing_poll_interval_s": 0.2, **server},
        "models": {
            "iris": {
                "sticky_key": "header:X-User-Id",
                "stable": "v1",
                "versions": {
                    "v1": {"backend": "sklearn", "path": str(models_dir / "iris-v1.skops")},
                    "v2": {"backend": "onnx", "path": str(models_dir / "iris-v2.onnx")},
                    "slow": {"backend": "fake", "label": 1, "latency_ms": 3000},
                    "broken": {"backend": "fake", "label": 1, "error_rate": 1.0},
                    "missing": {"backend": "fake", "fail_load": "weights file is corrupt"},
                },
            },
            "echo": {
                "sticky_key": "header:X-User-Id",
                "stable": "a",
                "versions": {
                    "a": {"backend": "fake", "label": 0},
                    "b": {"backend": "fake", "label": 1},
                    "c": {"backend": "fake", "label": 2},
                },
            },
        },
    }


def workers_of(supervisor: int) -> set[int]:
    """The live child processes of ``supervisor`` (a ``serve --workers`` supervisor), from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if int(parent) == supervisor and state != "Z":
            found.add(int(entry))
    return found
