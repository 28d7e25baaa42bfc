"""Does a shadow slow down the answers users get? Served latency at a fixed rate, with and
without a 100 % mirror, in one run.

rollwise serves one in-process model, ``served``: a ``python`` version that spends
``--work-us`` (200) µs of CPU per request (a busy loop holding the GIL, as pure-Python
model code does: the hard case for a shadow sharing the process). Three more versions of
the same model can be mirrored to: ``fast``, an identical copy; ``slow``, which spends
``--slow-factor`` (10) times as much CPU per request; and ``sleepy``, as slow but asleep
(a ``fake`` version with ``latency_ms``), like a model behind a slow server. Rows, all
against one gateway (``--rows`` picks some):

- ``none``: no mirror;
- ``fast``: 100 % of requests mirrored to ``fast``;
- ``slow``: 100 % of requests mirrored to ``slow``;
- ``sleepy``: 100 % of requests mirrored to ``sleepy``.

In-process shadows run where ``--shadow-process`` (``server.shadow_process``) puts them:
``on`` (the default here), in the gateway's shadow host, a child process; ``off``, in
the shadows' thread pool inside the gateway process, to compare.

Each row sends ``--rate`` (300) requests a second for ``--seconds`` (10) from an open-loop
client: requests leave on a fixed schedule whether or not earlier answers came back (on
as many keep-alive connections as that takes), so a stall of the gateway shows in the
latencies instead of slowing the load down. Latency runs from writing a request to
reading its whole answer. The rows run ``--rounds`` (3) times in a rotating order; the
table shows, per row, the median over rounds of the served p50/p99, the ratio of that
p99 to the ``none`` row's, the share of mirrored requests the gateway dropped (from its
own ``/metrics``: ``rollwise_mirror_dropped_total`` against the mirrored requests), and
the CPU per request of the gateway's process and of its shadow host. A second table
shows the latencies rollwise itself recorded while each row ran (from its status API),
p50/p95: the served version's, timed in the gateway, and the row's shadow's, a hosted
shadow's being its model's time in the shadow host less its waits there for a CPU, to
set against what its model takes per call.

Pinning on two CPUs (taskset): the gateway alone on the first CPU; this script, which is
also the load generator, on the second, and the gateway's shadow host beside it (moved
there as each row starts): the core the operating system would give it beside a gateway
that keeps its own busy.

    .venv/bin/python bench/shadows.py             # about 2.5 minutes
    .venv/bin/python bench/shadows.py --quick     # a smoke check, about 30 s
    .venv/bin/python bench/shadows.py --shadow-process off   # the in-thread way

Results also go to ``bench/results/shadows-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gateway as gw  # noqa: E402 - bench/ is not a package

RESULTS = HERE / "results"
MODEL = "bench"
PATH = f"/models/{MODEL}/predict"
BODY = b'{"inputs": [[5.1, 3.5, 1.4, 0.2]]}'
ROWS: dict[str, dict[str, int]] = {
    "none": {},
    "fast": {"fast": 100},
    "slow": {"slow": 100},
    "sleepy": {"sleepy": 100},
    "spinner": {},
}
"""Row name → mirrors (version → percent); ``served`` always answers 100 %. ``spinner``
is a control: no mirror, but a process that is not rollwise's busy at the lowest
priority (``SCHED_IDLE``) on the shadow host's CPU as the ``slow`` row's shadow host is
(the same share of each 20 ms): what sharing that CPU so costs the served answers,
whoever runs there."""

SPINNER = (
    "import os, sys, time\n"
    "os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
    "busy_s, period_s = float(sys.argv[1]) * 0.02, 0.02\n"
    "while True:\n"
    "    start = time.perf_counter()\n"
    "    while time.perf_counter() - start < busy_s:\n"
    "        pass\n"
    "    if period_s > busy_s:\n"
    "        time.sleep(period_s - busy_s)\n"
)
SLOW_CPU_SHARE = 0.0
"""The share of a CPU the ``slow`` row's shadow asks for (rate × its CPU per call)."""

# What rollwise holds itself to: a 100 % shadow leaves the served p99 within 10 % of no
# shadow, and drops at most 1 % of the mirrored requests.
TARGET_P99_RATIO = 1.10
TARGET_DROPPED_SHARE = 0.01

CLK_TCK = os.sysconf("SC_CLK_TCK")
IDLE_LIMIT_S = 2.0
"""Idle keep-alive connections older than this are closed, not reused."""


class SpinModel:
    """A model that spends ``work_us`` µs of CPU per call in pure Python, holding the GIL.

    Loaded by the gateway as ``shadows:SpinModel`` (``python_path`` is this folder).
    """

    def __init__(self, work_us: float) -> None:
        self.work_s = work_us / 1e6

    def predict(self, rows: Sequence[Any]) -> list[int]:
        end = time.thread_time() + self.work_s
        while time.thread_time() < end:
            pass
        return [0] * len(rows)


CONFIG = """\
store: sqlite:///{dir}/shadows.db
server: {{host: 127.0.0.1, port: {port}, shadow_process: "{shadow_process}"}}
models:
  {model}:
    stable: served
    versions:
      served: {{backend: python, target: "shadows:SpinModel", factory: true,
               kwargs: {{work_us: {work_us}}}, python_path: "{here}"}}
      fast: {{backend: python, target: "shadows:SpinModel", factory: true,
             kwargs: {{work_us: {work_us}}}, python_path: "{here}"}}
      slow: {{backend: python, target: "shadows:SpinModel", factory: true,
             kwargs: {{work_us: {slow_us}}}, python_path: "{here}"}}
      sleepy: {{backend: fake, label: 0, latency_ms: {slow_ms}}}
"""


# -- the gateway ---------------------------------------------------------------------------------


def proc_cpu_seconds(pid: int, thread: int | None = None) -> float:
    """utime + stime of process ``pid`` (all its threads, or only ``thread``), in seconds."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    with open(path, "rb") as file:
        stat = file.read()
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    with open("/proc/stat") as file:
        fields = file.readline().split()
    user, nice, system = (int(x) for x in fields[1:4])
    return (user + nice + system) / CLK_TCK


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


class Gateway(gw.Server):
    """``rollwise serve`` on the bench config, pinned to ``cpu``, its output in a log file."""

    def __init__(
        self,
        work: Path,
        cpu: int | None,
        work_us: float,
        slow_us: float,
        switch_us: float = 0,
        shadow_process: str = "on",
    ) -> None:
        port = gw.free_port()
        config = work / "shadows.yaml"
        config.write_text(
            CONFIG.format(
                dir=work,
                port=port,
                model=MODEL,
                work_us=work_us,
                slow_us=slow_us,
                slow_ms=slow_us / 1000.0,
                here=HERE,
                shadow_process=shadow_process,
            )
        )
        if switch_us:
            # The whole process with a shorter switch interval, from its start.
            rollwise = [
                sys.executable,
                "-c",
                f"import sys; sys.setswitchinterval({switch_us / 1e6!r}); sys.argv[0] = "
                "'rollwise'; from rollwise.cli import main; main()",
            ]
        else:
            rollwise = gw.rollwise_command()
        command = [*gw.taskset(cpu), *gw.serve_command(config, rollwise)]
        super().__init__("gateway", command, port, work)

    def wait_ready(self, limit_s: float = 60.0) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited at start:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                status, answer = http("GET", f"{self.url}/api/v1/models/{MODEL}")
                if status == 200 and all(
                    v["health"] == "ready" for v in json.loads(answer)["versions"]
                ):
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the gateway did not become ready:\n{self.log_tail()}")

    def route(self, mirrors: dict[str, int]) -> None:
        body = json.dumps({"weights": {"served": 100}, "mirrors": mirrors}).encode()
        status, answer = http("PUT", f"{self.url}/api/v1/models/{MODEL}/routing", body)
        if status != 200:
            raise RuntimeError(f"the gateway refused the routing: {status} {answer!r}")

    def shadow_counts(self) -> dict[str, tuple[int, int]]:
        """(shadow requests, mirrored requests dropped) per version, from ``/metrics``."""
        _, text = http("GET", f"{self.url}/metrics")
        found: dict[str, list[int]] = {}
        for name, labels, value in _SAMPLE.findall(text.decode()):
            fields = dict(_LABEL.findall(labels))
            if fields.get("role") != "shadow" or fields.get("model") != MODEL:
                continue
            counts = found.setdefault(fields["version"], [0, 0])
            counts[0 if name == "rollwise_requests_total" else 1] = int(float(value))
        return {version: (counts[0], counts[1]) for version, counts in found.items()}

    def latencies(self, window_s: float) -> dict[tuple[str, str], tuple[float, float]]:
        """(version, role) → (p50, p95) in ms of the latency rollwise recorded over the
        last ``window_s``: a served version's time in the gateway, a shadow's own time
        (in the shadow host, for a hosted one)."""
        url = f"{self.url}/api/v1/models/{MODEL}?window_s={max(1, round(window_s))}"
        status, answer = http("GET", url)
        if status != 200:
            raise RuntimeError(f"the gateway refused the status read: {status} {answer!r}")
        found: dict[tuple[str, str], tuple[float, float]] = {}
        for version in json.loads(answer)["versions"]:
            for role in ("served", "shadow"):
                summary = version.get(role) or {}
                if summary.get("latency_p50_ms") is not None:
                    found[(version["name"], role)] = (
                        summary["latency_p50_ms"],
                        summary["latency_p95_ms"],
                    )
        return found

    def host_cpu_seconds(self) -> float:
        """The shadow host's (the gateway's child processes), while they live."""
        total = 0.0
        for pid in gw.children_of(self.proc.pid):
            with contextlib.suppress(OSError):
                total += proc_cpu_seconds(pid)
        return total

    def pin_host(self, cpu: int | None) -> None:
        """Move every thread of the shadow host onto ``cpu``."""
        if cpu is None:
            return
        for pid in gw.children_of(self.proc.pid):
            with contextlib.suppress(OSError):
                for thread in os.listdir(f"/proc/{pid}/task"):
                    with contextlib.suppress(OSError):
                        os.sched_setaffinity(int(thread), {cpu})

    def loop_cpu_seconds(self) -> float:
        """The main thread's, which runs the event loop."""
        return proc_cpu_seconds(self.proc.pid, self.proc.pid)


_SAMPLE = re.compile(
    r"^(rollwise_requests_total|rollwise_mirror_dropped_total)\{([^}]*)\} (\S+)$", re.MULTILINE
)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


# -- the open-loop client ------------------------------------------------------------------------


@dataclass
class Load:
    """What one fixed-rate run measured, latencies in ms."""

    sent: int
    answered: int
    failed: int
    latencies_ms: list[float]
    late_p99_ms: float
    """How late the client itself sent (its timer), p99: a check on the client."""
    connections: int


class Client:
    """Keep-alive HTTP/1.1 connections, each carrying one request at a time."""

    def __init__(self, port: int, request: bytes) -> None:
        self.port = port
        self.request = request
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.opened = 0

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        now = time.perf_counter()
        while self.idle:
            reader, writer, since = self.idle.pop()
            # The gateway closes connections idle for 5 s: never reuse one near that.
            if now - since < IDLE_LIMIT_S:
                return reader, writer
            writer.close()
        self.opened += 1
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def one(self, latencies: list[float]) -> bool:
        """Send the request and read the answer; True when it was a 200."""
        reader, writer = await self._connection()
        started = time.perf_counter()
        try:
            writer.write(self.request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
            print(f"  ! {type(error).__name__}: {error}", file=sys.stderr)
            writer.close()
            return False
        ended = time.perf_counter()
        latencies.append((ended - started) * 1000.0)
        self.idle.append((reader, writer, ended))
        if head.startswith(b"HTTP/1.1 200"):
            return True
        print(f"  ! answer {head.split(b' ', 2)[1].decode()}", file=sys.stderr)
        return False

    async def run(self, rate: float, seconds: float) -> Load:
        interval = 1.0 / rate
        total = round(rate * seconds)
        latencies: list[float] = []
        lateness: list[float] = []
        tasks: list[asyncio.Task[bool]] = []
        opened = self.opened
        start = time.perf_counter() + 0.01
        for number in range(total):
            due = start + number * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lateness.append(time.perf_counter() - due)
            tasks.append(asyncio.ensure_future(self.one(latencies)))
        results = await asyncio.gather(*tasks)
        ok = sum(results)
        return Load(
            sent=total,
            answered=ok,
            failed=total - ok,
            latencies_ms=latencies,
            late_p99_ms=quantile(lateness, 0.99) * 1000.0,
            connections=self.opened - opened,
        )

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


def quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the rows ------------------------------------------------------------------------------------


@dataclass
class Run:
    row: str
    round: int
    sent: int
    failed: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mirrored: int
    dropped: int
    gateway_cpu_us: float
    loop_cpu_us: float
    host_cpu_us: float
    """The shadow host's CPU per served request."""
    late_p99_ms: float
    connections: int
    served_latency_ms: tuple[float, float]
    """p50, p95 of the latency rollwise recorded for the served version in this row."""
    shadow_latency_ms: tuple[float, float]
    """p50, p95 of the latency rollwise recorded for the row's shadow (NaN: none)."""
    foreign_cpus: float
    """CPUs other processes used meanwhile: above ~0.1 the round is disturbed."""


HOST_CPU: int | None = None
"""Where the shadow host runs (see Pinning); None when nothing is pinned."""


SPINNER_CPU_S = 0.0
"""CPU the ``spinner`` rows' busy processes used, all rounds: not another process's."""


def start_spinner() -> subprocess.Popen[bytes]:
    """The ``spinner`` row's busy process, on the shadow host's CPU."""
    share = min(1.0, SLOW_CPU_SHARE)
    command = [*gw.taskset(HOST_CPU), sys.executable, "-c", SPINNER, str(share)]
    return subprocess.Popen(command)


def stop_spinner(spinner: subprocess.Popen[bytes] | None) -> float:
    """Stop the spinner; the CPU seconds it used (its own, not other processes')."""
    if spinner is None:
        return 0.0
    global SPINNER_CPU_S
    used = proc_cpu_seconds(spinner.pid)
    spinner.kill()
    spinner.wait()
    SPINNER_CPU_S += used
    return used


async def measure(
    gateway: Gateway, client: Client, row: str, round_: int, rate: float, seconds: float
) -> Run:
    mirrors = ROWS[row]
    gateway.route(mirrors)
    gateway.pin_host(HOST_CPU)
    before = gateway.shadow_counts()
    cpu0, loop0 = gateway.cpu_seconds(), gateway.loop_cpu_seconds()
    host0 = gateway.host_cpu_seconds()
    spinner = start_spinner() if row == "spinner" else None
    busy0, own0, wall0 = machine_busy_seconds(), time.process_time(), time.perf_counter()
    try:
        load = await client.run(rate, seconds)
    finally:
        spun = stop_spinner(spinner)
    ended = time.monotonic()
    cpu = gateway.cpu_seconds() - cpu0
    loop_cpu = gateway.loop_cpu_seconds() - loop0
    host_cpu = max(0.0, gateway.host_cpu_seconds() - host0)
    own = cpu + host_cpu + time.process_time() - own0
    own += spun
    foreign = max(0.0, machine_busy_seconds() - busy0 - own) / (time.perf_counter() - wall0)
    # Shadows still running finish before the counts are read (at most 10 s).
    deadline = time.monotonic() + 10.0
    while True:
        after = gateway.shadow_counts()
        mirrored = dropped = 0
        for version in mirrors:
            requests0, dropped0 = before.get(version, (0, 0))
            requests1, dropped1 = after.get(version, (0, 0))
            mirrored += (requests1 - requests0) + (dropped1 - dropped0)
            dropped += dropped1 - dropped0
        if mirrored >= load.sent * len(mirrors) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    # Once the row's last answers are in the gateway's metrics (flushed every second).
    await asyncio.sleep(1.5)
    recorded = gateway.latencies(seconds + time.monotonic() - ended)
    nothing = (float("nan"), float("nan"))
    shadow = next(iter(mirrors), None)
    lat = load.latencies_ms
    run = Run(
        row=row,
        round=round_,
        sent=load.sent,
        failed=load.failed,
        p50_ms=quantile(lat, 0.5),
        p90_ms=quantile(lat, 0.9),
        p99_ms=quantile(lat, 0.99),
        p999_ms=quantile(lat, 0.999),
        max_ms=max(lat) if lat else float("nan"),
        mirrored=mirrored,
        dropped=dropped,
        gateway_cpu_us=cpu * 1e6 / load.sent,
        loop_cpu_us=loop_cpu * 1e6 / load.sent,
        host_cpu_us=host_cpu * 1e6 / load.sent,
        late_p99_ms=load.late_p99_ms,
        connections=load.connections,
        served_latency_ms=recorded.get(("served", "served"), nothing),
        shadow_latency_ms=recorded.get((shadow, "shadow"), nothing) if shadow else nothing,
        foreign_cpus=foreign,
    )
    print(
        f"# round {round_} {row:5} p50 {run.p50_ms:.3f} ms  p99 {run.p99_ms:.3f} ms  "
        f"p99.9 {run.p999_ms:.3f} ms  mirrored {run.mirrored}  dropped {run.dropped}  "
        f"failed {run.failed}  CPU {run.gateway_cpu_us:.0f} µs/req "
        f"(loop {run.loop_cpu_us:.0f}, shadow host {run.host_cpu_us:.0f})  "
        f"client late p99 {run.late_p99_ms:.3f} ms  others {run.foreign_cpus:.2f} CPU",
        file=sys.stderr,
        flush=True,
    )
    return run


async def bench(args: argparse.Namespace, gateway: Gateway) -> list[Run]:
    request = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY
    client = Client(gateway.port, request)
    rows = list(args.rows)
    try:
        for row in rows:
            gateway.route(ROWS[row])
            await client.run(args.rate, args.warmup)
        runs = []
        for round_ in range(1, args.rounds + 1):
            shift = (round_ - 1) % len(rows)
            for row in rows[shift:] + rows[:shift]:
                runs.append(await measure(gateway, client, row, round_, args.rate, args.seconds))
        return runs
    finally:
        client.close()


def summarise(runs: list[Run], names: Sequence[str]) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    for row in names:
        mine = [r for r in runs if r.row == row]
        mirrored = sum(r.mirrored for r in mine)
        rows[row] = {
            "p50_ms": statistics.median(r.p50_ms for r in mine),
            "p99_ms": statistics.median(r.p99_ms for r in mine),
            "p999_ms": statistics.median(r.p999_ms for r in mine),
            "sent": sum(r.sent for r in mine),
            "failed": sum(r.failed for r in mine),
            "mirrored": mirrored,
            "dropped": sum(r.dropped for r in mine),
            "dropped_share": sum(r.dropped for r in mine) / mirrored if mirrored else 0.0,
            "gateway_cpu_us": statistics.median(r.gateway_cpu_us for r in mine),
            "host_cpu_us": statistics.median(r.host_cpu_us for r in mine),
            "served_p50_ms": statistics.median(r.served_latency_ms[0] for r in mine),
            "served_p95_ms": statistics.median(r.served_latency_ms[1] for r in mine),
            "shadow_p50_ms": statistics.median(r.shadow_latency_ms[0] for r in mine),
            "shadow_p95_ms": statistics.median(r.shadow_latency_ms[1] for r in mine),
        }
    base = rows["none"]["p99_ms"]
    for figures in rows.values():
        figures["p99_ratio"] = figures["p99_ms"] / base if base else float("nan")
    return rows


def print_table(rows: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    labels = {
        "none": "no mirror",
        "fast": "100 % mirror, fast copy",
        "slow": f"100 % mirror, {args.slow_factor:g}× slower",
        "sleepy": f"100 % mirror, {args.slow_factor:g}× slower, asleep",
        "spinner": "no mirror, another process busy",  # as the slow row's host
    }
    header = (
        f"{'served at ' + format(args.rate, 'g') + ' req/s':34} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'p99.9 ms':>8} {'p99 vs none':>11} {'mirrored':>9} {'dropped':>8} {'CPU µs/req':>10} "
        f"{'host µs/req':>11}"
    )
    print(header)
    print("-" * len(header))
    for row, figures in rows.items():
        mirroring = bool(ROWS[row])
        dropped = f"{100 * figures['dropped_share']:.2f}%" if mirroring else "-"
        mirrored = str(int(figures["mirrored"])) if mirroring else "-"
        print(
            f"{labels[row]:34} {figures['p50_ms']:7.3f} {figures['p99_ms']:7.3f} "
            f"{figures['p999_ms']:8.3f} {figures['p99_ratio']:10.2f}× {mirrored:>9} "
            f"{dropped:>8} {figures['gateway_cpu_us']:10.0f} {figures['host_cpu_us']:11.0f}"
        )
    print(
        f"(medians of {args.rounds} round(s) of {args.seconds:g} s per row; mirrored and "
        "dropped summed over the rounds; CPU: the gateway's process per served request; "
        f"host: its shadow host's, shadow_process {args.shadow_process}; another process "
        f"busy: no mirror, a loop at the lowest priority on the shadow host's CPU, busy "
        f"{100 * min(1.0, SLOW_CPU_SHARE):.0f} % of each 20 ms as the slow row's host)"
    )
    print()
    print_recorded(rows, args)
    print()
    print("rollwise against its targets")
    for row in (r for r in rows if ROWS[r]):
        figures = rows[row]
        ratio_ok = figures["p99_ratio"] <= TARGET_P99_RATIO
        drops_ok = figures["dropped_share"] <= TARGET_DROPPED_SHARE
        print(
            f"  {row:6}: served p99 / no mirror {figures['p99_ratio']:6.2f}×  target ≤ "
            f"{TARGET_P99_RATIO:g}×  {'PASS' if ratio_ok else 'MISS'};  dropped "
            f"{100 * figures['dropped_share']:5.2f}%  target ≤ {100 * TARGET_DROPPED_SHARE:g}%  "
            f"{'PASS' if drops_ok else 'MISS'}"
        )
    if "spinner" in rows:
        print(
            f"  control: another process busy at the lowest priority on the shadow host's "
            f"CPU, no mirror: served p99 / no mirror {rows['spinner']['p99_ratio']:.2f}×"
        )


def print_recorded(rows: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    """The latencies rollwise recorded, next to what the row's shadow model takes."""
    slow_ms = args.work_us * args.slow_factor / 1000.0
    takes = {
        "fast": f"{args.work_us / 1000.0:.3f} CPU",
        "slow": f"{slow_ms:.3f} CPU",
        "sleepy": f"{slow_ms:.3f} asleep",
    }
    header = (
        f"{'latency rollwise recorded, ms':34} {'served p50':>10} {'served p95':>10} "
        f"{'shadow p50':>10} {'shadow p95':>10} {'its model takes':>16}"
    )
    print(header)
    print("-" * len(header))
    for row, figures in rows.items():
        label = (
            f"shadow {row}"
            if ROWS[row]
            else {"spinner": "another process busy"}.get(row, "no mirror")
        )
        model = takes.get(row, "-")
        shadow = (
            f"{figures['shadow_p50_ms']:10.3f} {figures['shadow_p95_ms']:10.3f}"
            if ROWS[row]
            else f"{'-':>10} {'-':>10}"
        )
        print(
            f"{label:34} {figures['served_p50_ms']:10.3f} {figures['served_p95_ms']:10.3f} "
            f"{shadow} {model:>16}"
        )
    print(
        f"(medians over the rounds of each row's p50/p95; served: the stable version "
        f"'served', timed in the gateway; shadow: the row's shadow version, timed in the "
        f"shadow host for a hosted one (fast, slow) when shadow_process is "
        f"{args.shadow_process})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=300.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="per row and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per row, once")
    parser.add_argument("--work-us", type=float, default=200.0, help="CPU per served request")
    parser.add_argument("--slow-factor", type=float, default=10.0)
    parser.add_argument(
        "--switch-interval-us",
        type=float,
        default=0.0,
        help="run the whole gateway with this switch interval (default: Python's, 5000)",
    )
    parser.add_argument(
        "--rows",
        type=lambda text: ["none", *(r for r in text.split(",") if r and r != "none")],
        default=list(ROWS),
        help=f"rows to run besides none, comma-separated (default: {','.join(ROWS)})",
    )
    parser.add_argument(
        "--shadow-process",
        choices=("on", "off", "auto"),
        default="on",
        help="server.shadow_process: in-process shadows in a child process (on) or in the "
        "gateway's shadow threads (off)",
    )
    parser.add_argument(
        "--host-cpu",
        choices=("load", "gateway"),
        default="load",
        help="where the shadow host runs: beside this script (default) or beside the gateway",
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 4 s per row")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.warmup = 1, 4.0, 1.0

    global HOST_CPU, SLOW_CPU_SHARE
    SLOW_CPU_SHARE = args.rate * args.work_us * args.slow_factor / 1e6
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2 and shutil.which("taskset"):
        gateway_cpu: int | None = cpus[0]
        os.sched_setaffinity(0, {cpus[1]})
        if args.host_cpu == "load":
            HOST_CPU = cpus[1]
            pinning = (
                f"the gateway alone on CPU {cpus[0]}; this script (the load) and the "
                f"gateway's shadow host on CPU {cpus[1]}"
            )
        else:
            HOST_CPU = cpus[0]
            pinning = (
                f"the gateway and its shadow host on CPU {cpus[0]}; this script (the load) "
                f"alone on CPU {cpus[1]}"
            )
    else:
        gateway_cpu = None
        pinning = "no pinning: every process shares every CPU"
    started = time.perf_counter()
    busy0 = machine_busy_seconds()
    with tempfile.TemporaryDirectory(prefix="rollwise-shadows-") as folder:
        gateway = Gateway(
            Path(folder),
            gateway_cpu,
            args.work_us,
            args.work_us * args.slow_factor,
            args.switch_interval_us,
            args.shadow_process,
        )
        try:
            gateway.wait_ready()
            with contextlib.suppress(ImportError):
                import uvloop

                uvloop.install()
            runs = asyncio.run(bench(args, gateway))
            own = (
                gateway.cpu_seconds()
                + gateway.host_cpu_seconds()
                + time.process_time()
                + SPINNER_CPU_S
            )
        finally:
            gateway.stop()
    wall = time.perf_counter() - started
    foreign = max(0.0, machine_busy_seconds() - busy0 - own) / wall
    rows = summarise(runs, args.rows)
    print()
    print_table(rows, args)
    print(f"note: {pinning}")
    if foreign > 0.1:
        print(
            f"note: other processes on this machine used {foreign:.2f} CPU on average while "
            "the benchmark ran: its figures are disturbed, compare rows of this run only"
        )
    print(
        f"served model: {args.work_us:g} µs of CPU per request (pure Python, holding the GIL); "
        f"slow shadow: {args.work_us * args.slow_factor:g} µs"
    )
    result = {
        "settings": {**vars(args), "out": None, "pinning": pinning},
        "versions": {"python": platform.python_version()},
        "rows": rows,
        "runs": [asdict(run) for run in runs],
        "foreign_load_cpus": foreign,
    }
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"shadows-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
