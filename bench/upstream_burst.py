"""Where does the p99 of an ``http`` version come from when 64 requests arrive after it idled?

Row (f) of ``bench/gateway.py`` puts rollwise in front of a model-like OIP server (one thread,
``--work-us`` of CPU per inference). This script repeats that set-up with a server that
counts what its clients do to it, and measures at ``--connections`` (64) connections, with
``wrk``, in this order:

- ``direct``: wrk straight at the model-like server (wrk opens its own 64 connections);
- ``rollwise, after idle``: rollwise's two ``http`` versions (90/10, as in row (f)) after
  ``--idle-s`` seconds without traffic, so that its pool connections have expired;
- ``rollwise, warm``: the same again at once, with the pool's connections still open.

For each run: wrk's p50/p99, and from the server: connections accepted, the most of them
accepted within any 10 ms, how many connections carried inferences and how many each
carried (min / median / max). ``--pool '{"max_connecting": 4}'`` adds options to both
versions, to compare pool settings.

    .venv/bin/python bench/upstream_burst.py                 # about 40 s
    .venv/bin/python bench/upstream_burst.py --pool '{"max_connecting": 4, "min_idle": 4}'

Pinning as row (f): the server alone on the first CPU; wrk, rollwise and this script on the
second. ``--serve PORT`` runs the counting server itself (used by the script).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gateway as gw  # noqa: E402 - bench/ is not a package
import oip_upstream as oip  # noqa: E402

STATS_PATH = b"/_stats"
BURST_WINDOW_S = 0.010


# -- the counting server ---------------------------------------------------------------------


class _Stats:
    def __init__(self) -> None:
        self.accepted_at: list[float] = []
        self.per_connection: Counter[int] = Counter()

    def report(self) -> bytes:
        times = self.accepted_at
        burst = 0
        start = 0
        for end, at in enumerate(times):
            while at - times[start] > BURST_WINDOW_S:
                start += 1
            burst = max(burst, end - start + 1)
        counts = sorted(self.per_connection.values())
        document = {
            "accepted": len(times),
            "accepted_10ms_max": burst,
            "connections_used": len(counts),
            "per_connection_min": counts[0] if counts else 0,
            "per_connection_median": statistics.median(counts) if counts else 0,
            "per_connection_max": counts[-1] if counts else 0,
        }
        self.accepted_at = []
        self.per_connection = Counter()
        return json.dumps(document).encode()


STATS = _Stats()
_serials = itertools.count()


class CountingProtocol(oip.OipProtocol):
    """The model-like server's protocol, counting accepts and inferences per connection."""

    def __init__(self, work_s: float) -> None:
        super().__init__(work_s)
        self._serial = next(_serials)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        STATS.accepted_at.append(time.monotonic())
        super().connection_made(transport)

    def on_message_complete(self) -> None:
        if self._url == STATS_PATH and self._transport is not None:
            self._transport.write(oip._response(b"200 OK", STATS.report(), True))
            return
        if self._parser.get_method() == b"POST":
            STATS.per_connection[self._serial] += 1
        super().on_message_complete()


async def serve(port: int, work_us: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: CountingProtocol(work_us / 1e6), "127.0.0.1", port, backlog=1024
    )
    async with server:
        await asyncio.Event().wait()


# -- the runs ----------------------------------------------------------------------------------


def server_stats(upstream: gw.Server) -> dict[str, Any]:
    status, body = gw.http("GET", upstream.url + STATS_PATH.decode())
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


def one_run(
    bench: gw.Bench, target: gw.Target, upstream: gw.Server, connections: int, seconds: int
) -> dict[str, Any]:
    server_stats(upstream)
    result = bench.wrk_run(target, connections, seconds)
    return {"p50_ms": result.p50_ms, "p99_ms": result.p99_ms, "rps": result.rps} | server_stats(
        upstream
    )


CONFIG = """\
store: sqlite:///{dir}/burst.db
server: {{host: 127.0.0.1, port: {port}{server_extra}}}
models:
  {model}:
    stable: a
    versions:
      a: {{backend: http, url: "{upstream}", model: {model}{extra}}}
      b: {{backend: http, url: "{upstream}", model: {model}{extra}}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work-us", type=float, default=gw.DEFAULT_WORK_US)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run (3)")
    parser.add_argument("--idle-s", type=float, default=5.0, help="idle before a burst (5)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--pool", default="{}", help="JSON options added to both versions")
    parser.add_argument(
        "--flush-interval-s",
        type=float,
        help="rollwise's server.flush_interval_s (default: its own), to tell the pool's part "
        "of the tail from the periodic flush's",
    )
    args = parser.parse_args()
    if args.serve:
        import uvloop

        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(serve(args.serve, args.work_us))
        return
    pool_options = json.loads(args.pool)
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit(f"wrk is missing: {gw.INSTALL_HINT}")
    pin = gw.choose_pinning()
    with tempfile.TemporaryDirectory(prefix="rollwise-burst-") as tmp:
        work = Path(tmp)
        servers: list[gw.Server] = []
        with gw.servers_stopped(servers):
            port = gw.free_port()
            upstream = gw.Server(
                "counting-upstream",
                [
                    *pin.prefix(pin.server_cpu),
                    sys.executable,
                    __file__,
                    "--serve",
                    str(port),
                    "--work-us",
                    f"{args.work_us:g}",
                ],
                port,
                work,
            )
            servers.append(upstream)
            gw.wait_ready(upstream, "/v2/health/ready")
            extra = "".join(f", {k}: {json.dumps(v)}" for k, v in pool_options.items())
            gateway_port = gw.free_port()
            flush = args.flush_interval_s
            text = CONFIG.format(
                dir=work,
                port=gateway_port,
                server_extra="" if flush is None else f", flush_interval_s: {flush:g}",
                model=gw.MODEL,
                upstream=upstream.url,
                extra=extra,
            )
            gateway = gw.start_rollwise(
                "rollwise-burst", work, pin, text, gateway_port, "rollwise", True
            )
            servers.append(gateway)
            status, answer = gw.http(
                "PUT",
                f"{gateway.url}/api/v1/models/{gw.MODEL}/routing",
                json.dumps({"weights": gw.SPLIT}).encode(),
            )
            if status != 200:
                raise RuntimeError(f"rollwise refused the routing: {status} {answer!r}")
            lua = work / "post.lua"
            lua.write_text(gw.lua_post_script(gw.OIP_BODY))
            direct = gw.Target("direct", "direct", upstream, gw.OIP_PATH, lua)
            proxied = gw.Target("rollwise", "rollwise", gateway, gw.OIP_PATH, lua)
            bench = gw.Bench(args, pin, wrk)
            bench.wrk_run(direct, args.connections, 1)
            bench.wrk_run(proxied, args.connections, 1)
            rows: dict[str, list[dict[str, Any]]] = {
                "direct": [],
                "rollwise, after idle": [],
                "rollwise, warm": [],
            }
            for number in range(args.runs):
                print(f"# run {number + 1}: idle {args.idle_s:g} s", file=sys.stderr, flush=True)
                time.sleep(args.idle_s)
                rows["direct"].append(
                    one_run(bench, direct, upstream, args.connections, args.duration)
                )
                time.sleep(args.idle_s)
                rows["rollwise, after idle"].append(
                    one_run(bench, proxied, upstream, args.connections, args.duration)
                )
                rows["rollwise, warm"].append(
                    one_run(bench, proxied, upstream, args.connections, args.duration)
                )
    flushing = "" if args.flush_interval_s is None else f"; flush every {args.flush_interval_s:g} s"
    print(
        f"pool options: {pool_options or 'defaults'}{flushing}; {args.connections} connections, "
        f"{args.duration} s per run, model-like server {args.work_us:g} µs/inference"
    )
    header = (
        f"{'row':<22}{'run':>4}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'accepts':>9}"
        f"{'in 10ms':>8}{'used':>6}{'per conn min/med/max':>22}"
    )
    print(header)
    print("-" * len(header))
    for label, runs in rows.items():
        for number, r in enumerate(runs, 1):
            spread = (
                f"{r['per_connection_min']}/{r['per_connection_median']:g}/"
                f"{r['per_connection_max']}"
            )
            print(
                f"{label:<22}{number:>4}{r['rps']:>8.0f}{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}"
                f"{r['accepted']:>9}{r['accepted_10ms_max']:>8}{r['connections_used']:>6}"
                f"{spread:>22}"
            )
    print("(the machine may be shared: compare rows of one run with each other)")


if __name__ == "__main__":
    main()
