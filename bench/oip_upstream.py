"""A fast stand-in model server for rollwise benchmarks: Open Inference Protocol V2 over HTTP/1.1.

Run it as ``python bench/oip_upstream.py --port N``. It prints nothing; it is ready once the
port accepts connections. It answers every model name:

- ``POST /v2/models/{name}/infer``: one fixed, small OIP response (the request body is read
  and ignored, so the server costs the same whatever the client sends);
- ``GET /v2/models/{name}``: model metadata;
- ``GET /v2/models/{name}/ready``, ``/v2/health/ready``, ``/v2/health/live``: 200.

It is a plain asyncio protocol on uvloop with httptools' request parser, not an ASGI app,
so that the upstream spends as little CPU per request as possible and the benchmarks that
use it measure the client or the gateway, not the model server.

``--work-us N`` (default 0) stands in for a model's compute: before answering each
inference request the server spins until its thread has used N µs more CPU time (a busy
loop on ``time.thread_time()``, so it is CPU work, not sleep, and N µs of CPU even if the
thread is preempted meanwhile). A small scikit-learn or ONNX model behind a model server
costs a few hundred µs of CPU per request; with ``--work-us 250`` this server behaves like
one, bound by its CPU to a little under 1,000,000 / N requests per second. Only
``POST /v2/models/{name}/infer`` does the work; metadata and health answers stay
immediate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from typing import cast

import httptools
import orjson

INFER_RESPONSE = orjson.dumps(
    {
        "model_name": "bench",
        "model_version": "1",
        "id": "",
        "outputs": [{"name": "predict", "shape": [1], "datatype": "INT64", "data": [1]}],
    }
)


def _metadata(name: str) -> bytes:
    return orjson.dumps(
        {
            "name": name,
            "versions": ["1"],
            "platform": "bench",
            "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}],
            "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}],
        }
    )


def _response(status: bytes, body: bytes, keep_alive: bool) -> bytes:
    connection = b"" if keep_alive else b"connection: close\r\n"
    return b"".join(
        (
            b"HTTP/1.1 ",
            status,
            b"\r\ncontent-type: application/json\r\ncontent-length: ",
            b"%d" % len(body),
            b"\r\n",
            connection,
            b"\r\n",
            body,
        )
    )


OK_EMPTY = b""
NOT_FOUND = orjson.dumps({"error": "not found"})

# Whole responses are built once per (kind, model, keep-alive) and reused: the hot path
# of this server is a dict lookup and one write. The flag says whether the request was an
# inference, the only kind that spends the model's work (``--work-us``).
_cache: dict[tuple[bytes, bytes, bool], tuple[bytes, bool]] = {}


def _answer(method: bytes, url: bytes, keep_alive: bool) -> tuple[bytes, bool]:
    key = (method, url, keep_alive)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    path = url.split(b"?", 1)[0]
    parts = path.strip(b"/").split(b"/")
    infer = False
    if method == b"POST" and len(parts) == 4 and parts[:2] == [b"v2", b"models"]:
        answer = _response(b"200 OK", INFER_RESPONSE, keep_alive)
        infer = parts[3] == b"infer"
    elif method == b"GET" and parts in ([b"v2", b"health", b"ready"], [b"v2", b"health", b"live"]):
        answer = _response(b"200 OK", OK_EMPTY, keep_alive)
    elif method == b"GET" and len(parts) == 3 and parts[:2] == [b"v2", b"models"]:
        answer = _response(b"200 OK", _metadata(parts[2].decode("latin-1")), keep_alive)
    elif method == b"GET" and len(parts) == 4 and parts[:2] == [b"v2", b"models"]:
        answer = _response(b"200 OK", OK_EMPTY, keep_alive)
    else:
        answer = _response(b"404 Not Found", NOT_FOUND, keep_alive)
    if len(_cache) < 1024:
        _cache[key] = (answer, infer)
    return answer, infer


def spend_cpu(seconds: float) -> None:
    """Busy-loop until this thread has used ``seconds`` more CPU time: a model's compute."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class OipProtocol(asyncio.Protocol):
    """One client connection; answers each request as soon as its body has arrived."""

    def __init__(self, work_s: float = 0.0) -> None:
        self._work_s = work_s
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only look-alikes.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    def on_url(self, url: bytes) -> None:
        self._url = url

    def on_message_complete(self) -> None:
        transport = self._transport
        if transport is None:
            return
        keep_alive = self._parser.should_keep_alive()
        answer, infer = _answer(self._parser.get_method(), self._url, keep_alive)
        if infer and self._work_s:
            spend_cpu(self._work_s)
        transport.write(answer)
        if not keep_alive:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


async def serve(host: str, port: int, work_us: float = 0.0) -> None:
    loop = asyncio.get_running_loop()
    work_s = work_us / 1e6
    server = await loop.create_server(
        lambda: OipProtocol(work_s), host, port, backlog=1024, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--work-us",
        type=float,
        default=0.0,
        help="µs of CPU to spend on each inference request before answering, standing in "
        "for a model's compute (default 0: answer at once)",
    )
    args = parser.parse_args()
    if args.work_us < 0:
        parser.error("--work-us must be 0 or more")
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        asyncio.run(serve(args.host, args.port, args.work_us))
    else:
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(serve(args.host, args.port, args.work_us))


if __name__ == "__main__":
    main()
