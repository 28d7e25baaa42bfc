"""A real Prometheus server for the tests: Debian's ``prometheus`` (``make test`` installs
it), started with a temporary config and storage on a free port, scraping the targets it
is given every second.

Without the binary a test skips, except under ``CI=true``, where what the project's own
files install must be there (as for chromium in ``support.browser``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
import yaml

from support.gateway import free_port

PROMETHEUS = Path("/usr/bin/prometheus")
SCRAPE_INTERVAL_S = 1


def require_prometheus() -> None:
    """Skip (fail under ``CI=true``) when no Prometheus binary is installed."""
    if PROMETHEUS.exists():
        return
    reason = f"no prometheus at {PROMETHEUS} (make test installs Debian's prometheus package)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


class PrometheusProcess:
    """``prometheus`` scraping ``targets`` (host:port) at ``/metrics`` every second."""

    def __init__(self, directory: Path, targets: Sequence[str]) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / "prometheus.log"
        config = {
            "global": {
                "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
                "evaluation_interval": f"{SCRAPE_INTERVAL_S}s",
            },
            "scrape_configs": [
                {
                    "job_name": "rollwise",
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": list(targets)}],
                }
            ],
        }
        self.config_path = directory / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> PrometheusProcess:
        require_prometheus()
        args = [
            str(PROMETHEUS),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(args, cwd=self.directory, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {self.process.returncode}:\n{self.log()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus did not start within {timeout_s} s:\n{self.log()}")

    def query(self, promql: str) -> dict[str, object]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        return dict(answer.json())

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def running_prometheus(directory: Path, targets: Sequence[str]) -> Iterator[PrometheusProcess]:
    server = PrometheusProcess(directory, targets).start()
    try:
        yield server
    finally:
        server.stop()
