"""A worker's link to its supervisor, over a real socket pair and real signals.

The worker says ``ready`` with its replica id once it serves; its gateway, asked to read
the config again (SIGHUP, or ``POST /api/v1/config/reload``), says ``hangup`` instead of
reloading this worker alone; and when the supervisor's end closes, the worker stops
itself with SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

import httpx
import pytest

from rollwise.config import parse_config
from rollwise.server.app import create_app
from rollwise.server.worker import SupervisorLink


def read_lines(sock: socket.socket, count: int) -> list[bytes]:
    data = b""
    while data.count(b"\n") < count:
        chunk = sock.recv(256)
        assert chunk, f"the link ended after {data!r}"
        data += chunk
    return data.splitlines()


def test_a_worker_asked_to_reload_its_config_asks_the_supervisor_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    supervisor, worker = socket.socketpair()
    supervisor.settimeout(10)
    config = parse_config(
        {
            "store": "sqlite:///state.db",
            "controller": {"enabled": False},
            "models": {"m": {"stable": "a", "versions": {"a": {"backend": "fake", "label": 0}}}},
        },
        base_dir=tmp_path,
        environ={},
    )
    link = SupervisorLink(os.dup(worker.fileno()))
    app = create_app(config, insecure_dev=True, host="127.0.0.1", on_hangup=link.hangup)
    gateway = app.gateway
    reloaded: list[str] = []

    async def reload_config(actor: str) -> list[str]:
        reloaded.append(actor)
        return []

    monkeypatch.setattr(gateway, "reload_config", reload_config)

    async def serve() -> None:
        await gateway.start()
        try:
            link.ready(gateway.replica)
            os.kill(os.getpid(), signal.SIGHUP)
            said = await asyncio.to_thread(read_lines, supervisor, 2)
            assert said == [f"ready {gateway.replica}".encode(), b"hangup"]
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as api:
                answer = await api.post("/api/v1/config/reload")
            assert answer.status_code == 202, answer.text
            assert answer.json()["restarting"] is True
            assert await asyncio.to_thread(read_lines, supervisor, 1) == [b"hangup"]
        finally:
            await gateway.stop()

    try:
        asyncio.run(serve())
    finally:
        supervisor.close()
        worker.close()
    assert reloaded == [], "the worker reloaded on its own"


def test_a_worker_stops_itself_when_its_supervisor_is_gone() -> None:
    supervisor, worker = socket.socketpair()

    async def serve() -> bool:
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopped.set)
        try:
            SupervisorLink(os.dup(worker.fileno())).watch()
            supervisor.close()
            await asyncio.wait_for(stopped.wait(), timeout=10)
            return stopped.is_set()
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    try:
        assert asyncio.run(serve())
    finally:
        worker.close()
