"""A hook endpoint on loopback for the hook tests: a small aiohttp server in a thread of
the test process that records every call and answers each path as the test says, and
can be told to answer otherwise mid-test (``answer(path, status, body)``)."""

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
class Call:
    path: str
    headers: dict[str, str]
    body: Any
    at_s: float


class HookReceiver:
    """Answers 200 to any path not given an answer of its own."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._answers: dict[str, tuple[int, str]] = {}
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="hook-receiver", daemon=True)

    def answer(self, path: str, status: int, body: str = "") -> None:
        with self._lock:
            self._answers[path] = (status, body)

    def calls(self, path: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if path is None or c.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        with self._lock:
            self._calls.append(
                Call(request.path, dict(request.headers), json.loads(raw or b"null"), time.time())
            )
            status, body = self._answers.get(request.path, (200, "ok"))
        return web.Response(status=status, text=body)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._started.set()
        await self._stop.wait()
        await runner.cleanup()

    def start(self) -> HookReceiver:
        self._thread.start()
        assert self._started.wait(10), "the hook receiver did not start"
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@contextmanager
def hook_receiver() -> Iterator[HookReceiver]:
    receiver = HookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()
