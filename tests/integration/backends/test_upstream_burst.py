"""How the upstream pool opens connections when many requests arrive at once, on real sockets.

``SlowAcceptServer`` behaves like a busy single-threaded model server: the kernel completes
every TCP handshake at once, but the server takes up (starts reading) only one new
connection per ``take_up_every_s``, and answers the requests it has read one at a time, in
the order it read them, each after ``answer_after_s``. It counts the connections *opening*
at any time: accepted by the kernel, first request not answered yet. That is what the
pool's ``max_connecting`` caps.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httptools
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oip_servers import OipTestServer, settle

from rollwise.backends.upstream import UpstreamPool

Run = Callable[[Coroutine[Any, Any, None]], None]

INFER = "/v2/models/iris/infer"


@dataclass
class SlowAcceptServer:
    take_up_every_s: float = 0.003
    answer_after_s: float = 0.001

    opening: int = 0
    max_opening: int = 0
    accepted: int = 0
    received: list[str] = field(default_factory=list)
    _backlog: list[_Conn] = field(default_factory=list)
    _conns: set[_Conn] = field(default_factory=set)
    _work: asyncio.Queue[tuple[_Conn, str]] = field(default_factory=asyncio.Queue)
    _server: asyncio.AbstractServer | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    port: int = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> SlowAcceptServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Conn(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._tasks = [asyncio.create_task(self._take_up()), asyncio.create_task(self._answer())]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        for task in self._tasks:
            task.cancel()
        self._server.close()
        for conn in list(self._conns):
            conn.transport.abort()
        await self._server.wait_closed()

    async def _take_up(self) -> None:
        while True:
            await asyncio.sleep(self.take_up_every_s)
            while self._backlog:
                conn = self._backlog.pop(0)
                if not conn.transport.is_closing():
                    conn.transport.resume_reading()
                    break

    async def _answer(self) -> None:
        while True:
            conn, request_id = await self._work.get()
            await asyncio.sleep(self.answer_after_s)
            conn.answer(request_id)

    def connected(self, conn: _Conn) -> None:
        self.accepted += 1
        self.opening += 1
        self.max_opening = max(self.max_opening, self.opening)
        self._conns.add(conn)
        conn.transport.pause_reading()
        self._backlog.append(conn)


class _Conn(asyncio.Protocol):
    def __init__(self, server: SlowAcceptServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []
        self.answered = 0
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.server.connected(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._conns.discard(self)
        if self.answered == 0:
            self.server.opening -= 1

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        request_id = str(orjson.loads(b"".join(self.body))["id"])
        self.body = []
        self.server.received.append(request_id)
        self.server._work.put_nowait((self, request_id))

    def answer(self, request_id: str) -> None:
        if self.transport.is_closing():
            return
        body = orjson.dumps({"id": request_id, "outputs": []})
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
        if self.answered == 0:
            self.server.opening -= 1
        self.answered += 1


async def infer(pool: UpstreamPool, request_id: str) -> str:
    response = await pool.request("POST", INFER, orjson.dumps({"id": request_id}))
    assert response.status == 200, response
    return str(orjson.loads(response.body)["id"])


def test_a_burst_after_idling_opens_at_most_max_connecting_connections_at_once(run: Run) -> None:
    async def main() -> None:
        async with SlowAcceptServer() as server:
            pool = UpstreamPool(server.origin, max_connecting=4, idle_timeout_s=0.05)
            await asyncio.gather(*(infer(pool, f"warm{i}") for i in range(8)))
            # Long enough for every connection to expire: the burst finds none to reuse.
            await asyncio.sleep(0.1)
            ids = [f"r{i}" for i in range(64)]
            answers = await asyncio.gather(*(infer(pool, i) for i in ids))
            assert answers == ids
            assert server.max_opening <= 4
            assert server.accepted > 4
            await pool.close()

    run(main())


def test_requests_beyond_max_connecting_wait_in_line_first_come_first_served(run: Run) -> None:
    async def main() -> None:
        async with SlowAcceptServer(take_up_every_s=0.001, answer_after_s=0.01) as server:
            pool = UpstreamPool(server.origin, max_connecting=1)
            first = asyncio.create_task(infer(pool, "r0"))
            await settle(lambda: server.received == ["r0"])
            tasks = [first]
            for i in range(1, 8):
                tasks.append(asyncio.create_task(infer(pool, f"r{i}")))
                # Each joins the line before the next one is started.
                await asyncio.sleep(0)
            assert await asyncio.gather(*tasks) == [f"r{i}" for i in range(8)]
            assert server.received == [f"r{i}" for i in range(8)]
            assert server.max_opening == 1
            await pool.close()

    run(main())


def test_min_idle_connections_are_kept_open_and_replaced_before_they_expire(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer() as server:
            pool = UpstreamPool(server.origin, min_idle=3, idle_timeout_s=0.2)
            await pool.request("GET", "/v2/health/ready")
            await settle(lambda: pool.idle_connections == 3)
            assert server.open_connections == 3
            # Replaced as they age, before the server could end them for idling.
            await settle(lambda: server.accepted >= 6 and pool.idle_connections == 3)
            assert server.accepted >= 6
            assert pool.idle_connections == 3
            await pool.close()
            await server.wait_for_connections(0)

    run(main())
