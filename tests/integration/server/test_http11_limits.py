"""rollwise's HTTP/1.1 server bounds what one client can hold.

Real sockets on 127.0.0.1, small limits so that each test takes a second or two:
backpressure for a pipelining client that never reads its answers, a deadline for a
request's headers and body, and a cap on open connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rollwise.config import parse_config
from rollwise.server.http11 import (
    ASGIApp,
    HTTPServer,
    Receive,
    Scope,
    Send,
    limits_from,
)
from support.gateway import GatewayProcess

# A guard against a hung test, not a measurement.
GUARD_S = 10.0
GET = b"GET / HTTP/1.1\r\nhost: t\r\n\r\n"


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, **options: Any) -> AsyncIterator[HTTPServer]:
    server = HTTPServer(app, "127.0.0.1", 0, lifespan=False, **options)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def reply(send: Send, body: bytes, status: int = 200) -> None:
    headers = [(b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_all(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("the client left")
        chunks.append(message["body"])
        if not message["more_body"]:
            return b"".join(chunks)


async def open_raw(
    port: int, *, rcvbuf: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client connection; ``rcvbuf`` shrinks its receive buffer (set before connecting)."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes (or resets) the connection."""
    parts = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := await asyncio.wait_for(reader.read(1 << 16), GUARD_S):
            parts.append(chunk)
    return b"".join(parts)


async def get_status(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(GET)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD_S)
        return int(head.split(b" ")[1])
    finally:
        writer.close()


async def wait_for(check: Any, what: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while not check():
        assert time.monotonic() < deadline, f"{what} never happened"
        await asyncio.sleep(0.02)


# -- item 2: backpressure for pipelined requests --------------------------------------------


def test_a_client_that_never_reads_is_not_read_either_and_is_closed_at_the_drain_deadline() -> None:
    calls = 0
    answer = b"a" * 16384

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal calls
        calls += 1
        await reply(send, answer)

    async def main() -> None:
        async with serving(app, drain_timeout_s=0.5, max_pipelined=8) as server:
            reader, writer = await open_raw(server.port, rcvbuf=4096)
            writer.write(GET * 20_000)
            await wait_for(lambda: server.connections, "the connection")
            (conn,) = server.connections
            alive = weakref.ref(conn)
            most_queued = most_buffered = 0
            # Sample while the client sends and never reads, until the deadline ends it.
            while server.connections:
                most_queued = max(most_queued, len(conn.queue))
                most_buffered = max(most_buffered, conn.transport.get_write_buffer_size())
                await asyncio.sleep(0.01)
            del conn
            # Before: every request was parsed and answered into an ever growing buffer.
            assert most_queued <= 8
            assert most_buffered <= 256 * 1024
            assert calls < 2_000
            assert server.drain_timeouts == 1
            await read_until_closed(reader)
            writer.close()
            gc.collect()
            assert alive() is None, "the connection outlived its client"

    asyncio.run(asyncio.wait_for(main(), 3 * GUARD_S))


def test_pipelined_requests_beyond_the_queue_bound_are_all_answered_in_order() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_all(receive)
        await reply(send, scope["path"].encode() + b":" + body)

    def one(number: int) -> bytes:
        if number % 3:
            return b"GET /%d HTTP/1.1\r\nhost: t\r\n\r\n" % number
        body = b"b" * (number % 7000)
        return b"POST /%d HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n\r\n%b" % (
            number,
            len(body),
            body,
        )

    async def main() -> None:
        async with serving(app, max_pipelined=4) as server:
            reader, writer = await open_raw(server.port)
            writer.write(b"".join(one(n) for n in range(300)))
            for number in range(300):
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD_S)
                length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                assert body == b"/%d:" % number + (
                    b"b" * (number % 7000) if number % 3 == 0 else b""
                )
            assert server.accepted == 1
            writer.close()

    asyncio.run(main())


def test_the_gateway_process_stays_small_under_a_client_that_never_reads(
    tmp_path: Path,
) -> None:
    config = {
        "store": "sqlite:///state.db",
        "server": {"drain_timeout_s": 1.0},
        "models": {"echo": {"stable": "a", "versions": {"a": {"backend": "fake", "label": 1}}}},
    }
    gateway = GatewayProcess(tmp_path, config, http="rollwise").start()
    assert gateway.process is not None
    pid = gateway.process.pid

    def rss_mb() -> float:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    async def main() -> None:
        before = rss_mb()
        reader, writer = await open_raw(gateway.port, rcvbuf=4096)
        # /metrics answers ~1.6 KB: 20,000 of them grew the server by ~50 MB before.
        writer.write(b"GET /metrics HTTP/1.1\r\nhost: t\r\n\r\n" * 20_000)
        peak = before
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            peak = max(peak, rss_mb())
            await asyncio.sleep(0.1)
        # The drain deadline (1 s, from the config) has passed: the server hung up.
        answered = (await read_until_closed(reader)).count(b"HTTP/1.1 200")
        writer.close()
        assert answered < 10_000
        assert peak - before < 20, f"RSS grew from {before:.0f} to {peak:.0f} MB"

    try:
        asyncio.run(main())
    finally:
        gateway.stop()


# -- item 6: deadlines for a request and a cap on connections -------------------------------


@pytest.mark.parametrize("stalls_in", ["body", "headers"])
def test_a_slow_client_gets_408_after_body_timeout_while_others_are_served(
    stalls_in: str, caplog: pytest.LogCaptureFixture
) -> None:
    disconnects = 0

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal disconnects
        try:
            body = await read_all(receive)
        except ConnectionError:
            disconnects += 1
            return
        await reply(send, body)

    start = {
        "body": b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 1000\r\n\r\nfirst",
        "headers": b"POST / HTTP/1.1\r\nhost: t\r\nx-slow: ",
    }[stalls_in]

    async def slow_client(port: int) -> tuple[bytes, float]:
        reader, writer = await open_raw(port)
        began = time.monotonic()
        writer.write(start)

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for _ in range(200):
                    await asyncio.sleep(0.05)
                    writer.write(b"x")
                    await writer.drain()

        trickling = asyncio.create_task(trickle())
        answer = await read_until_closed(reader)
        trickling.cancel()
        writer.close()
        return answer, time.monotonic() - began

    async def main() -> None:
        # keep_alive_s is longer than the deadline: it is not what cuts the client off.
        async with serving(app, body_timeout_s=0.5, keep_alive_s=10.0) as server:
            slow = [asyncio.create_task(slow_client(server.port)) for _ in range(3)]
            for _ in range(10):
                assert await get_status(server.port) == 200
                await asyncio.sleep(0.02)
            for answer, took in await asyncio.gather(*slow):
                assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
                assert took < 3.0
            assert server.read_timeouts == 3
            assert disconnects == (3 if stalls_in == "body" else 0)
            assert await get_status(server.port) == 200

    with caplog.at_level(logging.WARNING, logger="rollwise.http"):
        asyncio.run(main())
    # Logged, and once for the three: a flood of slow clients is no flood of lines.
    lines = [r for r in caplog.records if "did not arrive within" in r.getMessage()]
    assert len(lines) == 1


def test_connections_over_max_connections_get_503_and_one_under_it_is_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await reply(send, b"ok")

    async def main() -> None:
        async with serving(app, max_connections=2) as server:
            held = [await open_raw(server.port) for _ in range(2)]
            for reader, writer in held:
                writer.write(GET)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD_S)
                assert head.startswith(b"HTTP/1.1 200 ")
            for _ in range(5):
                began = time.monotonic()
                reader, writer = await open_raw(server.port)
                refused = await read_until_closed(reader)
                writer.close()
                assert refused.startswith(b"HTTP/1.1 503 "), refused
                assert b"retry-after: 1" in refused
                assert time.monotonic() - began < 1.0
            assert server.refused == 5
            assert len(server.connections) == 2
            # One leaves: there is room for one more.
            held[0][1].close()
            await wait_for(lambda: len(server.connections) == 1, "the close")
            assert await get_status(server.port) == 200
            held[1][1].close()

    with caplog.at_level(logging.WARNING, logger="rollwise.http"):
        asyncio.run(main())
    lines = [r for r in caplog.records if "max_connections (2)" in r.getMessage()]
    assert len(lines) == 1
    assert "5 time(s)" not in lines[0].getMessage()


def test_the_limits_come_from_the_gateway_config(tmp_path: Path) -> None:
    config = parse_config(
        {
            "store": "sqlite:///state.db",
            "server": {
                "body_timeout_s": 7,
                "drain_timeout_s": 3,
                "max_connections": 50,
                "max_pipelined": 9,
                "shutdown_timeout_s": 12,
            },
            "models": {"m": {"stable": "a", "versions": {"a": {"backend": "fake", "label": 1}}}},
        },
        base_dir=tmp_path,
        environ={},
    )
    limits = {
        "body_timeout_s": 7,
        "drain_timeout_s": 3,
        "max_connections": 50,
        "max_pipelined": 9,
        "grace_s": 12,
    }
    assert limits_from(config.server) == limits
    defaults = parse_config(
        {"store": "sqlite:///s.db", "models": {}}, base_dir=tmp_path, environ={}
    ).server
    assert (defaults.body_timeout_s, defaults.max_connections) == (30.0, 1000)
