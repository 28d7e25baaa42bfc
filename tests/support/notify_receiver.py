"""A webhook receiver on loopback for notification and tracing tests: a small aiohttp
server in a thread of the test process that records what it is sent (JSON decoded,
anything else as bytes).

``mode`` says how it answers: ``ok`` (204), ``fail`` (500), or ``hang`` (reads the
request and never answers, until the receiver stops).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from support.gateway import free_port


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    at_s: float
    """time.time() when it arrived."""


def _decoded(request: web.Request, raw: bytes) -> Any:
    """JSON bodies decoded; any other body (an OTLP protobuf) as its bytes."""
    return json.loads(raw) if request.content_type == "application/json" else raw


class Receiver:
    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.received: list[Received] = []
        self.attempts = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="receiver", daemon=True)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        with self._lock:
            self.attempts += 1
        if self.mode == "hang":
            assert self._stop is not None
            await self._stop.wait()
            return web.Response(status=503)
        if self.mode == "fail":
            return web.Response(status=500)
        with self._lock:
            self.received.append(
                Received(request.path, dict(request.headers), _decoded(request, raw), time.time())
            )
        return web.Response(status=204)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._started.set()
        await self._stop.wait()
        await runner.cleanup()

    def start(self) -> Receiver:
        self._thread.start()
        assert self._started.wait(10), "the receiver did not start"
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def bodies(self, path: str | None = None) -> list[Any]:
        with self._lock:
            return [r.body for r in self.received if path is None or r.path == path]

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)


@contextmanager
def receiving(mode: str = "ok") -> Iterator[Receiver]:
    receiver = Receiver(mode).start()
    try:
        yield receiver
    finally:
        receiver.stop()
