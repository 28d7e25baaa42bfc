"""Real Open Inference Protocol servers for the ``http`` backend's integration tests.

``OipTestServer`` is an asyncio server on a free loopback port, run in the test's own event
loop, that speaks HTTP/1.1 by httptools and can misbehave on request: close every connection,
close idle ones, close after N answers, drop a request unanswered, answer slowly, in chunks,
byte by byte, without framing, or with an error. It counts what the client did to it
(connections accepted, requests received, most requests in flight at once).

``asgi_app`` is the same model as an ASGI app, for running under a real uvicorn process.

The model, ``iris`` by default, answers each row of its first input with the row's sum.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httptools
import orjson

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


# -- the model and its routes, shared by both servers ------------------------------------------


@dataclass
class Model:
    name: str = "iris"
    prefix: str = ""
    ready: bool = True
    per_model_ready: bool = True
    """False: the server has no ``/v2/models/{m}/ready`` route (answers 404 there)."""
    fail_status: int | None = None
    fail_body: bytes = b'{"error": "model exploded"}'
    infer_body: bytes | None = None
    """When set, every inference answer is this body instead of the computed one."""


def metadata(model: Model) -> dict[str, Any]:
    return {
        "name": model.name,
        "versions": ["7"],
        "platform": "test-sums",
        "inputs": [{"name": "features", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [{"name": "sum", "datatype": "FP64", "shape": [-1]}],
    }


def infer(model: Model, body: bytes) -> tuple[int, bytes]:
    if model.fail_status is not None:
        return model.fail_status, model.fail_body
    if model.infer_body is not None:
        return 200, model.infer_body
    try:
        document = orjson.loads(body)
        first = document["inputs"][0]
        shape, data = first["shape"], first["data"]
        rows = shape[0] if shape else 1
        width = len(data) // rows if rows else 0
        sums = [float(sum(data[r * width : (r + 1) * width])) for r in range(rows)]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ZeroDivisionError) as exc:
        return 400, orjson.dumps({"error": f"bad inference request: {exc!r}"})
    answer: dict[str, Any] = {
        "model_name": model.name,
        "model_version": "7",
        "outputs": [{"name": "sum", "datatype": "FP64", "shape": [rows], "data": sums}],
    }
    if isinstance(document.get("id"), str):
        answer["id"] = document["id"]
    return 200, orjson.dumps(answer)


def route(model: Model, method: str, target: str, body: bytes) -> tuple[int, bytes]:
    path = target.split("?", 1)[0]
    if not path.startswith(model.prefix + "/"):
        return 404, b'{"error": "no such route"}'
    parts = path[len(model.prefix) :].strip("/").split("/")
    if method == "GET" and parts == ["v2", "health", "ready"]:
        return (200, b"") if model.ready else (503, b'{"error": "starting"}')
    if len(parts) >= 3 and parts[:2] == ["v2", "models"]:
        if parts[2] != model.name:
            return 404, orjson.dumps({"error": f"model {parts[2]} not found"})
        if method == "GET" and len(parts) == 3:
            return 200, orjson.dumps(metadata(model))
        if method == "GET" and parts[3:] == ["ready"] and model.per_model_ready:
            return (200, b"") if model.ready else (503, b'{"error": "model is loading"}')
        if method == "POST" and parts[3:] == ["infer"]:
            return infer(model, body)
    return 404, b'{"error": "no such route"}'


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}


async def settle(done: Callable[[], bool]) -> None:
    """Let the event loop run until ``done()`` holds, or about two seconds have passed.

    Closing a socket takes effect on both ends over a few loop turns; the caller asserts
    the outcome afterwards, so a state that never comes still fails the test.
    """
    for _ in range(200):
        if done():
            return
        await asyncio.sleep(0.01)


# -- the in-process server --------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class OipTestServer:
    """An OIP server on 127.0.0.1, started with ``async with``."""

    model: Model = field(default_factory=Model)
    connection_close: bool = False
    """Answer every request with ``Connection: close`` and close."""
    hold_open: bool = False
    """With ``connection_close``: say so, but leave the socket open and keep serving on it."""
    close_after: int | None = None
    """Close a connection, without saying so, after this many answers on it."""
    drop_after: int | None = None
    """Once a connection has answered this many requests, close it on the next request
    without answering (the request was received)."""
    partial_after: int | None = None
    """Once this many requests were answered in all, answer the next ones with headers and
    half a body, then close."""
    idle_close_s: float | None = None
    """Close a keep-alive connection idle for this long."""
    delays: Sequence[float] = ()
    """Seconds to wait before answering the first, second, ... request (in arrival order)."""
    delay_s: float = 0.0
    """Seconds to wait before answering requests past ``delays``."""
    framing: str = "length"
    """``length`` (Content-Length), ``chunked``, or ``eof`` (HTTP/1.0, body ends at close)."""
    trickle: bool = False
    """Write answers one byte per event-loop turn."""
    interim: bool = False
    """Send ``100 Continue`` before each answer."""

    accepted: int = 0
    requests: int = 0
    answered: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _server: asyncio.AbstractServer | None = None
    _transports: set[asyncio.Transport] = field(default_factory=set)
    _tasks: set[asyncio.Future[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.model.prefix}"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def open_connections(self) -> int:
        return len(self._transports)

    async def __aenter__(self) -> OipTestServer:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _ServerConnection(self), "127.0.0.1", 0)
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for transport in list(self._transports):
            transport.abort()
        await self._server.wait_closed()

    async def wait_for_connections(self, count: int) -> None:
        """Wait (bounded) until exactly ``count`` connections are open server-side."""
        await settle(lambda: self.open_connections == count)

    def delay_for(self, index: int) -> float:
        return self.delays[index] if index < len(self.delays) else self.delay_s


class _ServerConnection(asyncio.Protocol):
    def __init__(self, server: OipTestServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.answered = 0
        self.idle_timer: asyncio.TimerHandle | None = None

    # asyncio side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.server.accepted += 1
        self.server._transports.add(self.transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.server._transports.discard(self.transport)
        self.transport = None
        if self.idle_timer is not None:
            self.idle_timer.cancel()

    # httptools side

    def on_message_begin(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        self.url = b""
        self.headers = {}
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        server = self.server
        request = Received(
            self.parser.get_method().decode(),
            self.url.decode("latin-1"),
            self.headers,
            b"".join(self.body),
        )
        index = server.requests
        server.requests += 1
        server.received.append(request)
        if server.drop_after is not None and self.answered >= server.drop_after:
            self.close()
            return
        status, body = route(server.model, request.method, request.path, request.body)
        keep_alive = self.parser.should_keep_alive() and not server.connection_close
        server.in_flight += 1
        server.max_in_flight = max(server.max_in_flight, server.in_flight)
        delay = server.delay_for(index)
        loop = asyncio.get_running_loop()
        if delay > 0:
            loop.call_later(delay, self.answer, status, body, keep_alive)
        else:
            self.answer(status, body, keep_alive)

    # answering

    def answer(self, status: int, body: bytes, keep_alive: bool) -> None:
        server = self.server
        server.in_flight -= 1
        if self.transport is None or self.transport.is_closing():
            return
        if server.partial_after is not None and server.answered >= server.partial_after:
            head = f"HTTP/1.1 {status} OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            self.transport.write(head + body[: len(body) // 2])
            self.close()
            return
        framing = server.framing
        version = "1.0" if framing == "eof" else "1.1"
        lines = [f"HTTP/{version} {status} {REASONS.get(status, 'Other')}"]
        lines.append("Content-Type: application/json")
        if framing == "length":
            lines.append(f"Content-Length: {len(body)}")
        elif framing == "chunked":
            lines.append("Transfer-Encoding: chunked")
        if framing == "eof":
            keep_alive = False
        elif not keep_alive:
            lines.append("Connection: close")
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode()
        if framing == "chunked":
            third = max(1, len(body) // 3)
            for start in range(0, len(body), third):
                piece = body[start : start + third]
                payload += b"%x\r\n%b\r\n" % (len(piece), piece)
            payload += b"0\r\n\r\n"
        else:
            payload += body
        if server.interim:
            payload = b"HTTP/1.1 100 Continue\r\n\r\n" + payload
        self.answered += 1
        server.answered += 1
        ends = (not keep_alive and not server.hold_open) or (
            server.close_after is not None and self.answered >= server.close_after
        )
        if server.trickle:
            task = asyncio.ensure_future(self.trickle(payload, ends))
            server._tasks.add(task)
            task.add_done_callback(server._tasks.discard)
            return
        self.transport.write(payload)
        self.after_answer(ends)

    async def trickle(self, payload: bytes, ends: bool) -> None:
        for index in range(len(payload)):
            if self.transport is None:
                return
            self.transport.write(payload[index : index + 1])
            await asyncio.sleep(0)
        self.after_answer(ends)

    def after_answer(self, ends: bool) -> None:
        if ends:
            self.close()
        elif self.server.idle_close_s is not None:
            loop = asyncio.get_running_loop()
            self.idle_timer = loop.call_later(self.server.idle_close_s, self.close)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# -- the same model as an ASGI app, for uvicorn --------------------------------------------------

ASGI_MODEL = Model()

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def asgi_app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    status, body = route(ASGI_MODEL, scope["method"], scope["path"], b"".join(chunks))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- subprocess servers --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_process(command: Sequence[str], port: int) -> subprocess.Popen[bytes]:
    """Start a server process and wait (bounded) until ``port`` accepts connections."""
    proc = subprocess.Popen(list(command), cwd=REPO, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{command} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError(f"{command} did not listen on port {port}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def uvicorn_command(port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "oip_servers:asgi_app",
        "--app-dir",
        str(HERE),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--http",
        "httptools",
        "--loop",
        "uvloop",
        "--no-access-log",
        "--log-level",
        "warning",
        *extra,
    ]


def bench_upstream_command(port: int) -> list[str]:
    return [sys.executable, str(REPO / "bench" / "oip_upstream.py"), "--port", str(port)]
