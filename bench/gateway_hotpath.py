"""The Python cost of rollwise's prediction path, without sockets: µs per request.

Drives the gateway's ASGI data plane in-process with ready-made ASGI messages, for the same
request ``bench/gateway.py`` proxies: ``POST /v2/models/bench/infer`` split 90/10 between
two versions. The versions are stand-ins for the ``http`` backend that skip the network but
still decode the upstream's OIP answer, so what is timed is everything rollwise does around
the two socket writes and reads: body reading, parsing and checking, routing, the backend's
response decoding, metrics, the prediction log, and encoding the reply. The store threads
(the flushes of metrics and logged predictions to SQLite) are counted separately, and so is
the time the garbage collector spent, which grows with the predictions the gateway keeps
in memory for feedback.

    .venv/bin/python bench/gateway_hotpath.py                 # a few seconds
    .venv/bin/python bench/gateway_hotpath.py --profile 25    # and cProfile's top 25

This tells where the CPU goes inside rollwise; ``bench/gateway.py`` measures the whole
process under real HTTP load, including the server's own HTTP handling and the kernel.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import tempfile
import threading
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from rollwise.backends.base import InferenceRequest, InferenceResponse, ModelMetadata
from rollwise.backends.http import decode_response
from rollwise.config import parse_config
from rollwise.server.app import create_app
from rollwise.server.gc_policy import GcPauses, settle_heap

MODEL = "bench"
BODY = (
    b'{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", '
    b'"data": [5.1, 3.5, 1.4, 0.2]}]}'
)
# What bench/oip_upstream.py answers.
UPSTREAM_ANSWER = (
    b'{"model_name":"bench","model_version":"1","id":"","outputs":'
    b'[{"name":"predict","shape":[1],"datatype":"INT64","data":[1]}]}'
)
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": f"/v2/models/{MODEL}/infer",
    "raw_path": f"/v2/models/{MODEL}/infer".encode(),
    "query_string": b"",
    "root_path": "",
    "headers": [
        (b"host", b"127.0.0.1:8080"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
        (b"x-user", b"user-0"),
    ],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8080),
}

HEADERS = SCOPE["headers"][:-1]
USERS = 10_000
"""Distinct sticky users the requests cycle over, as bench/gateway.py sends them."""


class UpstreamStandIn:
    """An ``http`` version minus the socket: decodes a fixed upstream answer."""

    kind = "http"

    def __init__(self, spec: Any, base_dir: Path) -> None:
        self.name = spec.name

    async def load(self) -> None:
        return None

    def ready(self) -> bool:
        return True

    async def predict(self, request: InferenceRequest) -> InferenceResponse:
        return decode_response(UPSTREAM_ANSWER)

    async def close(self) -> None:
        return None

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(platform="bench")


async def drive(requests: int, profile: int) -> None:
    with tempfile.TemporaryDirectory(prefix="rollwise-hotpath-") as folder:
        config = parse_config(
            {
                "store": f"sqlite:///{folder}/hotpath.db",
                "models": {
                    MODEL: {
                        "stable": "a",
                        "sticky_key": "header:X-User",
                        "versions": {
                            "a": {"backend": "http", "url": "http://127.0.0.1:9"},
                            "b": {"backend": "http", "url": "http://127.0.0.1:9"},
                        },
                    }
                },
            },
            base_dir=Path(folder),
        )
        app = create_app(config, insecure_dev=True, backend_factory=UpstreamStandIn)
        gateway = app.gateway
        await gateway.start()
        # The server's own collector settings, as its start-up leaves them.
        settle_heap()
        try:
            await gateway.set_routing(MODEL, {"a": 90, "b": 10}, {}, actor="bench")
            await run(app, requests // 10, check=True)
            store_cpu = _store_cpu_seconds()
            thread0, process0, wall0 = time.thread_time(), time.process_time(), time.perf_counter()
            # The server's own record of its passes, for the timed requests only.
            collector = GcPauses()
            gc.callbacks.append(collector.callback)
            profiler = cProfile.Profile() if profile else None
            if profiler is not None:
                profiler.enable()
            await run(app, requests, check=False)
            if profiler is not None:
                profiler.disable()
            thread = time.thread_time() - thread0
            wall = time.perf_counter() - wall0
            gc.callbacks.remove(collector.callback)
            await gateway.telemetry.flush()
            process = time.process_time() - process0
            store = _store_cpu_seconds() - store_cpu
        finally:
            await gateway.stop()
    per = 1e6 / requests
    print(f"{requests} requests in {wall:.2f} s" + (" (under cProfile)" if profiler else ""))
    print(f"  event loop thread: {thread * per:6.1f} µs CPU per request")
    print(f"  store threads:     {store * per:6.1f} µs CPU per request (metrics, prediction log)")
    print(f"  whole process:     {process * per:6.1f} µs CPU per request")
    print(f"  of which the garbage collector: {collector.total_s * per:.1f} µs per request;")
    passes = zip(collector.passes, collector.seconds, collector.longest_s, strict=True)
    for generation, (count, seconds, longest) in enumerate(passes):
        print(
            f"    generation {generation}: {count} passes, {seconds * 1e3:.0f} ms in all, "
            f"longest {longest * 1e3:.1f} ms"
        )
    if profiler is not None:
        print()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(profile)


def _store_cpu_seconds() -> float:
    """CPU time of the gateway's store threads, from /proc."""
    total = 0.0
    for thread in threading.enumerate():
        if not thread.name.startswith("rollwise-store") or thread.native_id is None:
            continue
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def run(app: Any, requests: int, *, check: bool) -> None:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if check:
            sent.append(message)

    users = [(b"x-user", f"user-{n}".encode()) for n in range(USERS)]
    for number in range(requests):
        scope = dict(SCOPE)
        scope["headers"] = [*HEADERS, users[number % USERS]]
        await app(scope, receive, send)
        if number % 64 == 63:
            # Let the gateway's background jobs (the flushes to the store) run, as they do
            # between requests in a real server.
            await asyncio.sleep(0)
    if check:
        statuses = {m["status"] for m in sent if m["type"] == "http.response.start"}
        if statuses != {200}:
            bodies = [m.get("body", b"")[:200] for m in sent if m["type"] == "http.response.body"]
            raise RuntimeError(f"unexpected answers {statuses}: {bodies[:3]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--profile", type=int, default=0, help="print cProfile's top N")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        asyncio.run(drive(args.requests, args.profile))
    else:
        uvloop.run(drive(args.requests, args.profile))


if __name__ == "__main__":
    main()
