"""``rollwise demo`` can be run again in the same folder, and SIGTERM stops it whole.

Each run starts from a fresh database, so a second run in a folder tells the same story
as the first instead of finding v2 already stable. SIGTERM is a clean stop: the demo
exits with one line and its gateway does not live on.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

# Guards against a hung demo, not measurements (a run takes about 35 s).
RUN_TIMEOUT_S = 240.0
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


def demo_command(folder: Path) -> list[str]:
    return [sys.executable, "-m", "rollwise.cli", "demo", "--dir", str(folder)]


def demo_env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}


def children(pid: int) -> set[int]:
    """The processes ``pid`` started that are still running (Linux); empty elsewhere."""
    found: set[int] = set()
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        found.update(int(child) for child in listing.read_text().split())
    return found


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    # A zombie has exited; only its parent has not collected it yet.
    return "\nState:\tZ" not in status


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_the_demo_runs_twice_in_the_same_folder(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    for run in ("first", "second"):
        result = subprocess.run(
            demo_command(folder),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            env=demo_env(),
        )
        assert result.returncode == 0, (
            f"the {run} run failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
        assert "what happened" in result.stdout


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_stops_the_demo_and_its_gateway(tmp_path: Path) -> None:
    output = tmp_path / "demo.out"
    with output.open("wb") as sink:
        demo = subprocess.Popen(
            demo_command(tmp_path / "demo"), stdout=sink, stderr=subprocess.STDOUT, env=demo_env()
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while (
            found := re.search(r"gateway on http://127\.0\.0\.1:(\d+)", output.read_text())
        ) is None:
            assert demo.poll() is None, f"the demo exited early:\n{output.read_text()}"
            assert time.monotonic() < deadline, f"the gateway never came up:\n{output.read_text()}"
            time.sleep(0.1)
        port = int(found.group(1))
        # Let the traffic and the first rollout get going.
        time.sleep(2)
        started = children(demo.pid)
        assert started, "the demo runs its gateway as a child process"
        assert accepts(port)
        # The demo names its dashboard, which is there to watch while it runs.
        dashboard = f"http://127.0.0.1:{port}/ui"
        assert dashboard in output.read_text()
        page = httpx.get(dashboard, timeout=5)
        assert page.status_code == 200 and "dashboard.js" in page.text

        demo.send_signal(signal.SIGTERM)
        code = demo.wait(timeout=STOP_TIMEOUT_S)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    text = output.read_text()
    assert code != 0, text
    assert "stopped by SIGTERM" in text, text
    assert "Traceback" not in text, text
    assert not [pid for pid in started if alive(pid)], "the demo's gateway outlived it"
    assert not accepts(port), "something still listens on the demo gateway's port"
