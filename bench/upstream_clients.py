"""Which HTTP client should the ``http`` backend use to reach its upstream model server?

Runs ``bench/oip_upstream.py`` on loopback and drives the same Open Inference Protocol
request through each candidate client, each run in a fresh process of its own:

- ``rollwise``: ``rollwise.backends.upstream.UpstreamPool`` (asyncio protocols + httptools);
- ``aiohttp``: ``ClientSession`` with a keep-alive ``TCPConnector``;
- ``aiosonic``: ``HTTPClient`` with a pool of the same size;
- ``pyreqwest``: the Rust reqwest client, when it is installed;
- ``httpx`` (only with ``--clients``): ``AsyncClient``, for reference.

For each it reports client CPU time per request (process CPU, all threads, divided by the
requests completed; the server runs in another process), p50/p99 latency with one request
at a time, and throughput with 64 requests in flight. Each client runs ``--runs`` times,
interleaved; the table shows medians and the ratio of CPU per request to rollwise's pool.

    .venv/bin/python bench/upstream_clients.py            # about 80 s on 2 cores
    .venv/bin/python bench/upstream_clients.py --runs 3 --clients rollwise,aiohttp
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
INFER_PATH = "/v2/models/bench/infer"
REQUEST_BODY = json.dumps(
    {
        "inputs": [
            {"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}
        ]
    }
).encode()
DEFAULT_CLIENTS = ("rollwise", "aiohttp", "aiosonic", "pyreqwest")
ALL_CLIENTS = (*DEFAULT_CLIENTS, "httpx")

Send = Callable[[], Awaitable[bytes]]
Close = Callable[[], Awaitable[None]]


# -- the clients ----------------------------------------------------------------------------


async def make_rollwise(url: str, pool: int) -> tuple[Send, Close]:
    from rollwise.backends.upstream import UpstreamPool

    upstream = UpstreamPool(
        url, max_connections=pool, timeout_s=10.0, headers={"Content-Type": "application/json"}
    )

    async def send() -> bytes:
        response = await upstream.request("POST", INFER_PATH, REQUEST_BODY)
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
        return response.body

    return send, upstream.close


async def make_aiohttp(url: str, pool: int) -> tuple[Send, Close]:
    import aiohttp

    # As lean as aiohttp gets: no cookie jar, no decompression, keep-alive pool of `pool`.
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=pool, limit_per_host=pool, keepalive_timeout=60),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=10),
    )
    target = url + INFER_PATH
    headers = {"Content-Type": "application/json"}

    async def send() -> bytes:
        async with session.post(target, data=REQUEST_BODY, headers=headers) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"status {response.status}")
            return body

    return send, session.close


async def make_aiosonic(url: str, pool: int) -> tuple[Send, Close]:
    import aiosonic
    from aiosonic.pools import PoolConfig

    connector = aiosonic.TCPConnector(
        pool_configs={":default": PoolConfig(size=pool, max_conn_requests=None)}
    )
    client = aiosonic.HTTPClient(connector=connector)
    target = url + INFER_PATH
    headers = {"Content-Type": "application/json"}

    async def send() -> bytes:
        response = await client.post(target, data=REQUEST_BODY, headers=headers)
        body: bytes = await response.content()
        if response.status_code != 200:
            raise RuntimeError(f"status {response.status_code}")
        return body

    async def close() -> None:
        await connector.cleanup()

    return send, close


async def make_pyreqwest(url: str, pool: int) -> tuple[Send, Close]:
    from pyreqwest.client import ClientBuilder  # type: ignore[import-not-found,unused-ignore]

    client = (
        ClientBuilder()
        .http1_only()
        .pool_max_idle_per_host(pool)
        .max_connections(pool)
        .error_for_status(False)
        .build()
    )
    target = url + INFER_PATH

    async def send() -> bytes:
        request = (
            client.post(target)
            .header("Content-Type", "application/json")
            .body_bytes(REQUEST_BODY)
            .build()
        )
        response = await request.send()
        body = bytes(await response.bytes())
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
        return body

    return send, client.close


async def make_httpx(url: str, pool: int) -> tuple[Send, Close]:
    import httpx

    client = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool), timeout=10.0
    )
    target = url + INFER_PATH
    headers = {"Content-Type": "application/json"}

    async def send() -> bytes:
        response = await client.post(target, content=REQUEST_BODY, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"status {response.status_code}")
        return response.content

    return send, client.aclose


FACTORIES: dict[str, Callable[[str, int], Awaitable[tuple[Send, Close]]]] = {
    "rollwise": make_rollwise,
    "aiohttp": make_aiohttp,
    "aiosonic": make_aiosonic,
    "pyreqwest": make_pyreqwest,
    "httpx": make_httpx,
}


def available(client: str) -> bool:
    module = "rollwise" if client == "rollwise" else client
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# -- one run, in its own process ---------------------------------------------------------


async def measure(
    client: str, url: str, concurrency: int, seq_s: float, conc_s: float
) -> dict[str, Any]:
    send, close = await FACTORIES[client](url, concurrency)
    try:
        expected = await send()
        if b'"outputs"' not in expected:
            raise RuntimeError(f"unexpected body {expected[:80]!r}")

        # Warm up: open the whole pool and let every code path run before measuring.
        async def burst(n: int) -> None:
            for _ in range(n):
                await send()

        await asyncio.gather(*(burst(20) for _ in range(concurrency)))
        await burst(200)

        # One request at a time: latency and CPU per request.
        latencies: list[int] = []
        cpu0 = time.process_time()
        end = time.perf_counter() + seq_s
        now = time.perf_counter_ns
        while time.perf_counter() < end:
            t0 = now()
            await send()
            latencies.append(now() - t0)
        cpu_seq = time.process_time() - cpu0

        # `concurrency` requests in flight: throughput and CPU per request.
        done = 0
        stop_at = time.perf_counter() + conc_s

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                await send()
                done += 1

        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - wall0
        cpu_conc = time.process_time() - cpu0
    finally:
        await close()
    latencies.sort()
    return {
        "client": client,
        "cpu_us_1": cpu_seq / len(latencies) * 1e6,
        "p50_us": latencies[len(latencies) // 2] / 1e3,
        "p99_us": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1e3,
        "cpu_us_n": cpu_conc / done * 1e6,
        "rps_n": done / wall,
    }


def worker_main(args: argparse.Namespace) -> None:
    import uvloop

    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})

    result = uvloop.run(
        measure(args.worker, args.url, args.concurrency, args.seq_seconds, args.conc_seconds)
    )
    print(json.dumps(result))


# -- the driver -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the upstream server exited at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the upstream server did not listen on {port} within {limit_s} s")


def run_once(client: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        client,
        "--url",
        url,
        "--concurrency",
        str(args.concurrency),
        "--seq-seconds",
        str(args.seq_seconds),
        "--conc-seconds",
        str(args.conc_seconds),
    ]
    if args.client_cpu is not None:
        command += ["--cpu", str(args.client_cpu)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{client} failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def print_table(results: dict[str, list[dict[str, Any]]], concurrency: int) -> None:
    def med(client: str, key: str) -> float:
        return float(statistics.median(r[key] for r in results[client]))

    base = "rollwise" if "rollwise" in results else next(iter(results))
    base_cpu = med(base, "cpu_us_n")
    header = (
        f"{'client':<10} {'CPU µs/req @1':>14} {'CPU µs/req @' + str(concurrency):>15} "
        f"{'p50 µs @1':>10} {'p99 µs @1':>10} {'req/s @' + str(concurrency):>11} "
        f"{'CPU vs ' + base:>16}"
    )
    print(header)
    print("-" * len(header))
    for client in results:
        print(
            f"{client:<10} {med(client, 'cpu_us_1'):>14.1f} {med(client, 'cpu_us_n'):>15.1f} "
            f"{med(client, 'p50_us'):>10.1f} {med(client, 'p99_us'):>10.1f} "
            f"{med(client, 'rps_n'):>11.0f} {med(client, 'cpu_us_n') / base_cpu:>15.2f}x"
        )


def driver_main(args: argparse.Namespace) -> None:
    clients = [c for c in args.clients.split(",") if c]
    unknown = [c for c in clients if c not in FACTORIES]
    if unknown:
        raise SystemExit(f"unknown clients {unknown}; choose from {', '.join(ALL_CLIENTS)}")
    skipped = [c for c in clients if not available(c)]
    clients = [c for c in clients if c not in skipped]
    for client in skipped:
        print(f"# {client}: not installed, skipped", file=sys.stderr)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "oip_upstream.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    # Client and server each on a core of their own: what a client costs is then not mixed
    # up with where the scheduler happened to put the two processes.
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    args.client_cpu = None
    if args.pin and len(cpus) >= 2:
        os.sched_setaffinity(server.pid, {cpus[-1]})
        args.client_cpu = cpus[0]
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    try:
        wait_for_port(port, server)
        url = f"http://127.0.0.1:{port}"
        for run in range(args.runs):
            # Rotate the order so that no client always runs first or last.
            order = clients[run % len(clients) :] + clients[: run % len(clients)]
            for client in order:
                result = run_once(client, url, args)
                results[client].append(result)
                print(
                    f"# run {run + 1}/{args.runs} {client:<10} "
                    f"cpu@1 {result['cpu_us_1']:.1f} µs  cpu@{args.concurrency} "
                    f"{result['cpu_us_n']:.1f} µs  p50 {result['p50_us']:.1f} µs  "
                    f"p99 {result['p99_us']:.1f} µs  {result['rps_n']:.0f} req/s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        server.terminate()
        server.wait(timeout=10)
    pinned = (
        f"client on CPU {args.client_cpu}, server on CPU {cpus[-1]}"
        if args.client_cpu is not None
        else "not pinned"
    )
    print(
        f"\nupstream: bench/oip_upstream.py on loopback; {args.runs} runs per client, medians; "
        f"{os.cpu_count()} CPUs, {pinned}; python {sys.version.split()[0]}; "
        f"{time.perf_counter() - started:.0f} s; load average before {load_before:.1f}, "
        f"after {os.getloadavg()[0]:.1f}\n"
    )
    print_table(results, args.concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clients", default=",".join(DEFAULT_CLIENTS))
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seq-seconds", type=float, default=1.0)
    parser.add_argument("--conc-seconds", type=float, default=1.5)
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="let the scheduler place processes"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
    else:
        driver_main(args)


if __name__ == "__main__":
    main()
