"""rollwise's HTTP/1.1 server over real sockets: framing, keep-alive, errors, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import pytest

from rollwise.config import parse_config
from rollwise.server.app import create_app
from rollwise.server.http11 import ASGIApp, HTTPServer, Receive, Scope, Send, StartupFailed
from support.gateway import GatewayProcess, free_port

# A guard against a hung test, not a measurement.
GUARD_S = 10.0


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, **options: Any) -> AsyncIterator[HTTPServer]:
    options.setdefault("lifespan", False)
    server = HTTPServer(app, "127.0.0.1", 0, **options)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        chunks.append(message["body"])
        if not message["more_body"]:
            return b"".join(chunks)


async def reply(send: Send, body: bytes, status: int = 200, **headers: str) -> None:
    pairs = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    pairs += [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": pairs})
    await send({"type": "http.response.body", "body": body})


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers what it was asked, as JSON."""
    body = await read_body(receive)
    await reply(
        send,
        orjson.dumps(
            {
                "method": scope["method"],
                "path": scope["path"],
                "raw_path": scope["raw_path"].decode(),
                "query": scope["query_string"].decode(),
                "version": scope["http_version"],
                "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
                "body": body.decode(),
            }
        ),
    )


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> Response:
    """One response from a raw connection, framed by length, chunks or the end."""
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD_S)
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"{name} twice"
            headers[name.lower()] = value.strip()
    if head or status in (100, 204, 304):
        return Response(status, headers, b"")
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            parts.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(p[:-2] for p in parts)
    else:
        body = await asyncio.wait_for(reader.read(), GUARD_S)
    return Response(status, headers, body)


async def at_eof(reader: asyncio.StreamReader) -> bool:
    """True once the server closed the connection (nothing more to read)."""
    try:
        rest = await asyncio.wait_for(reader.read(), GUARD_S)
    except ConnectionResetError:
        return True
    return rest == b""


@contextlib.asynccontextmanager
async def connected(
    server: HTTPServer,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def request(method: str, path: str, body: bytes = b"", *extra: str, version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "host: test", *extra]
    if body or method in ("POST", "PUT"):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# -- the scope ------------------------------------------------------------------------------


def test_the_scope_follows_the_asgi_spec() -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(dict(scope))
        await reply(send, b"{}")

    async def main() -> int:
        async with serving(app) as server, connected(server) as (reader, writer):
            writer.write(request("GET", "/a%20b/c%2Fd?x=1&y=%20", b"", "X-Mixed-Case: Yes"))
            assert (await read_response(reader)).status == 200
            return server.port

    port = asyncio.run(main())
    scope = seen[0]
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/a b/c/d"
    assert scope["raw_path"] == b"/a%20b/c%2Fd"
    assert scope["query_string"] == b"x=1&y=%20"
    assert scope["root_path"] == ""
    assert scope["headers"] == [(b"host", b"test"), (b"x-mixed-case", b"Yes")]
    assert scope["server"] == ("127.0.0.1", port)
    assert scope["client"][0] == "127.0.0.1"


# -- connections ----------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection() -> None:
    async def main() -> None:
        async with serving(echo) as server:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
                for number in range(5):
                    answer = await client.post("/n", content=str(number).encode())
                    assert answer.json()["body"] == str(number)
            assert server.accepted == 1

    asyncio.run(main())


def test_pipelined_requests_are_answered_in_order() -> None:
    async def slow_first(scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        if scope["path"] == "/1":
            # The first answer is the slowest: order must still hold.
            await asyncio.sleep(0.05)
        await reply(send, scope["path"].encode() + b":" + body)

    async def main() -> None:
        async with serving(slow_first) as server, connected(server) as (reader, writer):
            writer.write(
                request("POST", "/1", b"one") + request("GET", "/2") + request("POST", "/3", b"3")
            )
            answers = [await read_response(reader) for _ in range(3)]
            assert [a.body for a in answers] == [b"/1:one", b"/2:", b"/3:3"]
            assert server.accepted == 1

    asyncio.run(main())


def test_http_10_closes_unless_asked_to_keep_alive() -> None:
    async def main() -> None:
        async with serving(echo) as server:
            async with connected(server) as (reader, writer):
                writer.write(request("GET", "/plain", version="1.0"))
                answer = await read_response(reader)
                assert orjson.loads(answer.body)["version"] == "1.0"
                assert answer.headers["connection"] == "close"
                assert await at_eof(reader)
            async with connected(server) as (reader, writer):
                for path in ("/one", "/two"):
                    writer.write(request("GET", path, b"", "connection: keep-alive", version="1.0"))
                    answer = await read_response(reader)
                    assert answer.headers["connection"] == "keep-alive"
                    assert orjson.loads(answer.body)["path"] == path

    asyncio.run(main())


def test_http_10_streaming_ends_with_the_connection() -> None:
    async def stream(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b"cd"})

    async def main() -> None:
        async with serving(stream) as server, connected(server) as (reader, writer):
            writer.write(request("GET", "/", b"", "connection: keep-alive", version="1.0"))
            answer = await read_response(reader)
            assert "transfer-encoding" not in answer.headers
            assert answer.body == b"abcd"

    asyncio.run(main())


def test_connection_close_is_honoured_both_ways() -> None:
    async def closing(scope: Scope, receive: Receive, send: Send) -> None:
        await reply(send, b"{}", connection="close")

    async def main() -> None:
        async with serving(echo) as server, connected(server) as (reader, writer):
            writer.write(request("GET", "/", b"", "connection: close"))
            assert (await read_response(reader)).headers["connection"] == "close"
            assert await at_eof(reader)
        async with serving(closing) as server, connected(server) as (reader, writer):
            writer.write(request("GET", "/"))
            assert (await read_response(reader)).headers["connection"] == "close"
            assert await at_eof(reader)

    asyncio.run(main())


def test_idle_connections_are_closed_after_the_keep_alive_timeout() -> None:
    async def main() -> None:
        async with serving(echo, keep_alive_s=0.2) as server, connected(server) as (reader, w):
            w.write(request("GET", "/"))
            assert (await read_response(reader)).status == 200
            assert await at_eof(reader)
            assert not server.connections

    asyncio.run(main())


# -- request bodies -------------------------------------------------------------------------


def test_a_chunked_request_body_is_read_whole() -> None:
    async def main() -> None:
        async with serving(echo) as server, connected(server) as (reader, writer):
            writer.write(
                b"POST /c HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"
            )
            await writer.drain()
            writer.write(b"6\r\n world\r\n0\r\n\r\n")
            answer = await read_response(reader)
            assert orjson.loads(answer.body)["body"] == "hello world"

    asyncio.run(main())


def test_expect_100_continue_is_answered_when_the_app_reads() -> None:
    async def main() -> None:
        async with serving(echo) as server, connected(server) as (reader, writer):
            writer.write(
                b"POST /e HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n"
            )
            interim = await read_response(reader)
            assert interim.status == 100
            writer.write(b"data")
            answer = await read_response(reader)
            assert answer.status == 200
            assert orjson.loads(answer.body)["body"] == "data"

    asyncio.run(main())


def test_a_body_the_app_never_reads_does_not_spoil_the_next_request() -> None:
    async def ignores_body(scope: Scope, receive: Receive, send: Send) -> None:
        await reply(send, scope["path"].encode())

    async def main() -> None:
        async with serving(ignores_body) as server, connected(server) as (reader, writer):
            # The body arrives with the request, ...
            writer.write(request("POST", "/first", b"x" * 5000))
            assert (await read_response(reader)).body == b"/first"
            # ... or only after the answer went out.
            writer.write(b"POST /second HTTP/1.1\r\nhost: t\r\ncontent-length: 200000\r\n\r\n")
            assert (await read_response(reader)).body == b"/second"
            writer.write(b"y" * 200_000 + request("GET", "/third"))
            assert (await read_response(reader)).body == b"/third"
            assert server.accepted == 1

    asyncio.run(main())


def test_a_client_that_leaves_mid_body_gives_the_app_a_disconnect() -> None:
    async def main() -> None:
        seen: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()

        async def reader_app(scope: Scope, receive: Receive, send: Send) -> None:
            kinds = []
            while True:
                message = await receive()
                kinds.append(message["type"])
                if message["type"] == "http.disconnect":
                    break
            seen.set_result(kinds)

        async with serving(reader_app) as server:
            async with connected(server) as (_, writer):
                writer.write(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\npartial")
                await writer.drain()
                await asyncio.sleep(0.05)
            kinds = await asyncio.wait_for(seen, GUARD_S)
            assert kinds[-1] == "http.disconnect"
            assert kinds[:-1] == ["http.request"] * (len(kinds) - 1)

    asyncio.run(main())


def test_a_large_body_goes_through_with_a_slow_reader() -> None:
    async def slow_echo_size(scope: Scope, receive: Receive, send: Send) -> None:
        size = 0
        while True:
            message = await receive()
            size += len(message["body"])
            await asyncio.sleep(0)
            if not message["more_body"]:
                break
        await reply(send, str(size).encode())

    async def main() -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(64):
                yield b"z" * 65536

        async with serving(slow_echo_size) as server, httpx.AsyncClient() as client:
            answer = await client.post(f"http://127.0.0.1:{server.port}/", content=chunks())
            assert answer.text == str(64 * 65536)

    asyncio.run(main())


# -- responses ------------------------------------------------------------------------------


def test_head_answers_carry_no_body() -> None:
    async def main() -> None:
        async with serving(echo) as server, connected(server) as (reader, writer):
            writer.write(request("HEAD", "/h") + request("GET", "/after"))
            head = await read_response(reader, head=True)
            assert head.status == 200
            assert int(head.headers["content-length"]) > 0
            after = await read_response(reader)
            assert orjson.loads(after.body)["path"] == "/after"

    asyncio.run(main())


def test_a_streamed_response_is_chunked_and_whole() -> None:
    parts = [b"x" * 100_000 for _ in range(40)]

    async def stream(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in parts:
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def main() -> None:
        async with serving(stream) as server, connected(server) as (reader, writer):
            writer.write(request("GET", "/s"))
            answer = await read_response(reader)
            assert answer.headers["transfer-encoding"] == "chunked"
            assert answer.body == b"".join(parts)
            writer.write(request("GET", "/again"))
            assert (await read_response(reader)).status == 200

    asyncio.run(main())


def test_a_one_shot_response_without_a_length_gets_one() -> None:
    async def no_length(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"made"})

    async def main() -> None:
        async with serving(no_length) as server, connected(server) as (reader, writer):
            writer.write(request("GET", "/"))
            answer = await read_response(reader)
            assert (answer.status, answer.headers["content-length"], answer.body) == (
                201,
                "4",
                b"made",
            )
            assert "server" not in answer.headers and "date" not in answer.headers

    asyncio.run(main())


def test_a_starlette_streaming_response_works_while_it_listens_for_a_disconnect() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def numbers() -> AsyncIterator[bytes]:
        for number in range(5):
            await asyncio.sleep(0)
            yield b"%d," % number

    async def endpoint(request: Request) -> StreamingResponse:
        return StreamingResponse(numbers(), media_type="text/plain")

    app = Starlette(routes=[Route("/numbers", endpoint)])

    async def main() -> None:
        async with serving(app) as server, httpx.AsyncClient() as client:
            for _ in range(2):
                answer = await client.get(f"http://127.0.0.1:{server.port}/numbers")
                assert answer.headers["transfer-encoding"] == "chunked"
                assert answer.text == "0,1,2,3,4,"
            assert server.accepted == 1

    asyncio.run(main())


def test_an_absolute_form_target_is_split_into_path_and_query() -> None:
    async def main() -> None:
        async with serving(echo) as server, connected(server) as (reader, writer):
            writer.write(request("GET", "http://example.test/p%41th?q=1"))
            answer = orjson.loads((await read_response(reader)).body)
            assert (answer["path"], answer["raw_path"], answer["query"]) == (
                "/pAth",
                "/p%41th",
                "q=1",
            )

    asyncio.run(main())


# -- errors ---------------------------------------------------------------------------------


def test_a_response_header_with_a_line_break_is_refused_with_500() -> None:
    async def smuggler(scope: Scope, receive: Receive, send: Send) -> None:
        await reply(send, b"{}", x_note="a\r\nset-cookie: stolen=1")

    async def main() -> None:
        async with serving(smuggler) as server, connected(server) as (reader, writer):
            writer.write(request("GET", "/"))
            answer = await read_response(reader)
            assert answer.status == 500
            assert "set-cookie" not in answer.headers

    asyncio.run(main())


def test_a_malformed_request_gets_400_and_the_connection_closes() -> None:
    async def main() -> None:
        async with serving(echo) as server, connected(server) as (reader, writer):
            writer.write(b"GARBAGE\x01 / NOT-HTTP\r\n\r\n")
            answer = await read_response(reader)
            assert answer.status == 400
            assert "error" in orjson.loads(answer.body)
            assert await at_eof(reader)

    asyncio.run(main())


def test_oversized_headers_get_431() -> None:
    async def main() -> None:
        async with serving(echo, max_header_bytes=8192) as server, connected(server) as (r, w):
            w.write(request("GET", "/", b"", *(f"x-filler-{i}: {'v' * 100}" for i in range(200))))
            answer = await read_response(r)
            assert answer.status == 431
            assert await at_eof(r)

    asyncio.run(main())


def test_an_app_that_raises_gets_500_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("boom")

    async def broken_midway(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise ValueError("boom midway")

    async def main() -> None:
        async with serving(broken) as server, connected(server) as (reader, writer):
            writer.write(request("GET", "/x"))
            assert (await read_response(reader)).status == 500
        async with serving(broken_midway) as server, connected(server) as (reader, writer):
            writer.write(request("GET", "/y"))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD_S)
            assert head.startswith(b"HTTP/1.1 200")
            # The response cannot be finished: the connection ends before its last chunk.
            rest = await asyncio.wait_for(reader.read(), GUARD_S)
            assert rest == b"4\r\npart\r\n"

    with caplog.at_level(logging.ERROR, logger="rollwise.http"):
        asyncio.run(main())
    assert "boom" in caplog.text and "boom midway" in caplog.text


def test_an_app_that_returns_without_answering_gets_500() -> None:
    async def silent(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    async def main() -> None:
        async with serving(silent) as server, connected(server) as (reader, writer):
            writer.write(request("GET", "/"))
            assert (await read_response(reader)).status == 500

    asyncio.run(main())


# -- lifespan and shutdown ------------------------------------------------------------------


def test_graceful_shutdown_finishes_the_request_in_flight() -> None:
    async def main() -> None:
        arrived = asyncio.Event()
        release = asyncio.Event()

        async def slow(scope: Scope, receive: Receive, send: Send) -> None:
            arrived.set()
            await release.wait()
            await reply(send, b"done")

        server = HTTPServer(slow, "127.0.0.1", 0, lifespan=False)
        await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request("GET", "/"))
        await asyncio.wait_for(arrived.wait(), GUARD_S)
        stopping = asyncio.create_task(server.stop())
        # The idle connection closes after a short linger (0.5 s); the busy one is answered first.
        assert await at_eof(idle_reader)
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", server.port)
        release.set()
        answer = await read_response(reader)
        assert (answer.status, answer.body) == (200, b"done")
        assert answer.headers["connection"] == "close"
        await asyncio.wait_for(stopping, GUARD_S)
        writer.close()
        idle_writer.close()

    asyncio.run(main())


def test_lifespan_runs_around_serving_and_a_failed_startup_refuses_to_listen() -> None:
    events: list[str] = []

    def lifespan_app(fail: bool) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    events.append(message["type"])
                    if message["type"] == "lifespan.startup":
                        kind = "failed" if fail else "complete"
                        await send({"type": f"lifespan.startup.{kind}", "message": "no store"})
                        if fail:
                            return
                    else:
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            await echo(scope, receive, send)

        return app

    async def main() -> None:
        async with serving(lifespan_app(False), lifespan=True) as server:
            assert events == ["lifespan.startup"]
            async with httpx.AsyncClient() as client:
                assert (await client.get(f"http://127.0.0.1:{server.port}/")).status_code == 200
        assert events == ["lifespan.startup", "lifespan.shutdown"]
        port = free_port()
        failing = HTTPServer(lifespan_app(True), "127.0.0.1", port)
        with pytest.raises(StartupFailed, match="no store"):
            await failing.start()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)

    asyncio.run(main())


def test_an_app_without_lifespan_is_served_all_the_same() -> None:
    async def plain(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise RuntimeError("only HTTP here")
        await echo(scope, receive, send)

    async def main() -> None:
        async with serving(plain, lifespan=True) as server, httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{server.port}/")).status_code == 200

    asyncio.run(main())


def test_serve_exits_non_zero_when_the_gateway_cannot_start(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    config = tmp_path / "rollwise.yaml"
    config.write_text(
        f"store: sqlite:///{blocker}/state.db\n"
        "models:\n  m:\n    stable: a\n    versions:\n      a: {backend: fake, label: 0}\n"
    )
    result = subprocess.run(
        [
            *(sys.executable, "-m", "rollwise.cli", "serve", "--config", str(config)),
            *("--port", str(free_port()), "--http", "rollwise", "--insecure-dev"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "failed to start" in result.stderr


# -- clients and rollwise's own app ---------------------------------------------------------


def test_httpx_and_aiohttp_clients_work() -> None:
    async def main() -> None:
        async with serving(echo) as server:
            url = f"http://127.0.0.1:{server.port}/models/m/predict?q=1"
            async with httpx.AsyncClient() as client:
                answer = await client.post(url, json={"inputs": [1]})
                assert answer.json()["body"] == '{"inputs":[1]}'
            async with aiohttp.ClientSession() as session:
                for _ in range(3):
                    async with session.post(url, data=b"abc") as response:
                        assert response.status == 200
                        assert (await response.json())["body"] == "abc"
            assert server.accepted == 2

    asyncio.run(main())


def test_rollwise_gateway_app_is_served(tmp_path: Path) -> None:
    config = parse_config(
        {
            "store": "sqlite:///state.db",
            "models": {
                "echo": {
                    "stable": "a",
                    "versions": {"a": {"backend": "fake", "label": 1}},
                }
            },
        },
        base_dir=tmp_path,
        environ={},
    )
    app = create_app(config, insecure_dev=True, host="127.0.0.1")

    async def main() -> None:
        async with serving(app, lifespan=True) as server:
            base = f"http://127.0.0.1:{server.port}"
            async with httpx.AsyncClient(base_url=base) as client:
                assert (await client.get("/v2/health/ready")).status_code == 200
                for _ in range(3):
                    answer = await client.post("/models/echo/predict", json={"inputs": [[1.0]]})
                    assert answer.status_code == 200, answer.text
                    assert answer.headers["x-rollwise-version"] == "a"
                bad = await client.post("/models/echo/predict", content=b"{oops")
                assert bad.status_code == 400
                models = await client.get("/api/v1/models")
                assert models.status_code == 200
            assert server.accepted == 1

    asyncio.run(main())


@pytest.mark.parametrize("http", ["rollwise", "uvicorn"])
def test_serve_runs_on_either_http_server_and_stops_on_sigterm(http: str, tmp_path: Path) -> None:
    config = {
        "store": "sqlite:///state.db",
        "models": {"echo": {"stable": "a", "versions": {"a": {"backend": "fake", "label": 1}}}},
    }
    gateway = GatewayProcess(tmp_path, config, http=http).start()
    try:

        async def main() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
            body = b'{"inputs": [[1.0]]}'
            writer.write(b"".join(request("POST", "/models/echo/predict", body) for _ in range(3)))
            answers = [await read_response(reader) for _ in range(3)]
            assert [a.status for a in answers] == [200, 200, 200]
            assert {a.headers["x-rollwise-version"] for a in answers} == {"a"}
            writer.close()

        asyncio.run(main())
    finally:
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGTERM)
        # uvicorn ends by raising the signal again once it has shut down; rollwise exits 0.
        clean = {0} if http == "rollwise" else {0, -signal.SIGTERM}
        assert gateway.process.wait(timeout=30) in clean, gateway.log()
