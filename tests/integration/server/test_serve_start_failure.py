"""A gateway that cannot listen stops at once: its startup is undone, the controller too.

The gateway starts (store, models, rollout controller) before it binds its port, so a
port in use is found only after the controller thread runs. ``rollwise serve`` must
then shut the gateway down again and exit with one line naming the address, not hang
with a controller that may later take the lease.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rollwise.controller import LEASE_NAME
from rollwise.server.http11 import HTTPServer, Receive, Scope, Send, StartupFailed
from rollwise.store import open_store
from support.gateway import TOKENS, GatewayProcess, eventually

# A bound on a start that fails, not a measurement (it takes about a second).
EXIT_WITHIN_S = 30.0


def config() -> dict[str, Any]:
    return {
        "store": "sqlite:///state.db",
        "controller": {"enabled": True, "interval_s": 0.2, "lease_ttl_s": 2.0},
        "models": {"echo": {"stable": "a", "versions": {"a": {"backend": "fake", "label": 0}}}},
    }


@pytest.mark.parametrize("http", ["rollwise", "uvicorn"])
def test_serve_on_a_port_in_use_exits_and_leaves_the_lease_to_the_first(
    tmp_path: Path, http: str
) -> None:
    first = GatewayProcess(tmp_path, config(), insecure_dev=True).start()
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        assert first.process is not None
        # A gateway's controller holds the lease under its replica name (hostname-pid),
        # perhaps with a suffix of its own.
        replica = f"{socket.gethostname()}-{first.process.pid}"

        def holder() -> str | None:
            lease = store.get_lease(LEASE_NAME)
            return None if lease is None else lease.holder

        def first_leads() -> bool:
            held = holder()
            return held is not None and (held == replica or held.startswith(f"{replica}-"))

        eventually(first_leads)
        leader = holder()
        args = [
            sys.executable, "-m", "rollwise.cli", "serve",
            "--config", str(first.config_path), "--port", str(first.port),
            "--insecure-dev", "--log-level", "warning", "--http", http,
        ]  # fmt: skip
        result = subprocess.run(
            args,
            cwd=tmp_path,
            env={**os.environ, "ROLLWISE_TOKENS": TOKENS},
            capture_output=True,
            text=True,
            timeout=EXIT_WITHIN_S,
        )
        assert result.returncode != 0
        assert f"127.0.0.1', {first.port}" in result.stderr or (
            f"127.0.0.1:{first.port}" in result.stderr
        ), result.stderr
        assert "address already in use" in result.stderr, result.stderr
        if http == "rollwise":
            assert result.stderr.strip().splitlines() == [
                f"error: the gateway failed to start: cannot listen on 127.0.0.1:{first.port}: "
                "address already in use"
            ]
        # The first gateway's controller still holds the lease, never handed over.
        assert holder() == leader
        assert first.process.poll() is None
    finally:
        store.close()
        first.stop()


def test_a_server_that_cannot_bind_shuts_its_app_down() -> None:
    events: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            events.append(message["type"])
            kind = "startup" if message["type"] == "lifespan.startup" else "shutdown"
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return

    async def main() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            server = HTTPServer(app, "127.0.0.1", port)
            with pytest.raises(StartupFailed, match=f"cannot listen on 127.0.0.1:{port}"):
                await server.start()
        assert events == ["lifespan.startup", "lifespan.shutdown"]

    asyncio.run(main())
