"""How rollwise's HTTP server stops: what a client already sent is answered, and a
signal that comes while the server starts gives the start up cleanly."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from rollwise.server.http11 import HTTPServer, Receive, Scope, Send, serve
from support.gateway import free_port

# A guard against a hung test, not a measurement.
GUARD_S = 10.0
GET = b"GET / HTTP/1.1\r\nhost: t\r\n\r\n"


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


def test_a_request_sent_on_an_idle_keep_alive_connection_as_the_stop_begins_is_answered() -> None:
    async def main() -> None:
        server = HTTPServer(hello, "127.0.0.1", 0, lifespan=False)
        await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(GET)
            first = await asyncio.wait_for(reader.readuntil(b"hello"), GUARD_S)
            assert b"connection: close" not in first
            # The next request is on the wire (sent, not read yet by the server) when the
            # stop begins: closing the idle connection now would reset it unanswered.
            writer.write(GET)
            await asyncio.wait_for(server.stop(), GUARD_S)
            answer = await asyncio.wait_for(reader.read(), GUARD_S)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
            assert b"\r\nconnection: close\r\n" in answer
            assert answer.endswith(b"\r\n\r\nhello")
        finally:
            writer.close()

    asyncio.run(main())


def test_a_sigterm_while_the_app_starts_gives_the_start_up_and_undoes_it(
    sigterm_fallback: list[int],
) -> None:
    steps: list[str] = []

    async def slow_to_start(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "lifespan"
        assert (await receive())["type"] == "lifespan.startup"
        os.kill(os.getpid(), signal.SIGTERM)
        try:
            await asyncio.sleep(GUARD_S)
        except asyncio.CancelledError:
            steps.append("startup cut short")
            raise
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    port = free_port()
    asyncio.run(asyncio.wait_for(serve(slow_to_start, "127.0.0.1", port), GUARD_S / 2))
    assert sigterm_fallback == [], "the signal came before the server's handlers"
    assert steps == ["startup cut short"]
    with pytest.raises(OSError):
        asyncio.run(asyncio.open_connection("127.0.0.1", port))
