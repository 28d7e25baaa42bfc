"""What does rollwise cost in front of a model server, next to nginx and next to nothing?

One run measures, with wrk as the load generator and every figure the median of ``--runs``:

(a) ``direct``: the fast OIP model server (``bench/oip_upstream.py``) called directly;
(b) ``nginx``: nginx proxying it with a keep-alive upstream (one worker);
(c) ``rollwise``: ``rollwise serve`` splitting ``POST /v2/models/bench/infer`` 90/10 between
    two ``http`` versions that point at that same server, the OIP body passed through, on
    rollwise's own HTTP server (``--http rollwise``); (c') the same on uvicorn
    (``--http uvicorn``);
(d) ``inproc``: the example iris v1 model (scikit-learn, skops) served in-process by
    rollwise at ``POST /models/iris/predict``, against a bare Starlette endpoint
    (``bench/gateway_starlette.py``) that runs the same model the same way;
(e) ``model_direct``: a model-like OIP server (``oip_upstream.py --work-us``, default 250 µs
    of CPU per inference, what a small model behind a model server costs) called directly;
(f) ``model_rollwise``: rollwise in front of it, split 90/10 over two ``http`` versions on its
    own HTTP server, as in (c);
(g), (h) ``workers_model_1``, ``workers_model_2``: the same gateway as (f) run as
    ``rollwise serve --workers 1`` and ``--workers 2``, in front of the same model-like server;
(i), (j) ``workers_inproc_1``, ``workers_inproc_2``: the in-process iris gateway of (d) run as
    ``rollwise serve --workers 1`` and ``--workers 2``;
(k) ``model_rest``: rollwise in front of the model-like server of (e) as two ``rest``
    versions split 90/10, the OIP request passed through ``POST /proxy/bench/v2/models/
    bench/infer`` as any REST request is, and the prediction read from each answer through
    ``output_path`` (``$.outputs[0].data``); pinned as (f).

``--workers 1`` starts no supervisor: one worker is the gateway process itself, as without
the option. ``--workers 2`` is a supervisor (it owns the socket, loads no models) and two
worker processes; their CPU time is counted with the supervisor's.

Every request carries a sticky user (``X-User: u0`` to ``u9999``, the next one on each
request, from requests formatted once when wrk starts), and every rollwise config reads its
sticky key from that header, so that rollwise hashes a user on every request as it does in a
real rollout. nginx and the direct rows get the same requests.

For (a) to (c') and (e) to (h): requests/s at 64 connections, p50/p99 latency at 1 and at 64
connections, and the CPU time the proxy process spent per request (utime + stime from /proc,
before and after the 64-connection load, divided by the requests wrk completed; nginx's
master and worker added up). Then rollwise against its targets, each marked PASS or MISS.

Pinning on two CPUs (taskset): wrk and this script run on the second CPU, and of the
servers only the gateways of (f) to (j) (see below); the first CPU is the server side: the
OIP server, and in rows (b) to (d) the server under test beside it. Every row then crosses
between the CPUs the same way (wrk to the server side and back), so what a proxy adds is its
own work plus a loopback hop on its own CPU, not extra cross-CPU wake-ups; and the load
generator never competes with the servers.
``--upstream-cpu load`` moves the OIP server next to wrk instead.

Rows (e), (f) and (k) are pinned the other way, whatever ``--upstream-cpu`` says: the model-like
server alone on the first CPU (the model server's core), wrk and rollwise on the second.
That is the deployment the throughput target is about: the gateway runs beside the load,
and the question is whether it takes throughput away from the model server.

Rows (g) to (j) compare one worker with two, so the gateway under test may run on both CPUs
in all four (two workers need two CPUs; one worker gets the same choice, so that the count
of workers is the only difference); wrk stays on the second CPU, and in (g), (h) the
model-like server on the first. The CPU wrk itself uses is printed with them: two workers
cannot have it, so on two CPUs they stay below twice one worker's throughput.

After the runs, before each server stops: the longest garbage-collector pause each rollwise
server reports in ``/metrics`` (``rollwise_gc_longest_pause_seconds``; one scrape reaches
one worker, so a server with workers is scraped until each has answered), and the memory
of each process of rows (g) to (j) (RSS from ``/proc/<pid>/status``, PSS and USS from
``/proc/<pid>/smaps_rollup``).

    .venv/bin/python bench/gateway.py            # about 6 minutes
    .venv/bin/python bench/gateway.py --quick    # a smoke check, about 2 minutes

Needs wrk (``apt-get install -y wrk``); nginx (``apt-get install -y nginx-light``) is
optional: without it the nginx row is skipped. Results also go to
``bench/results/gateway-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
INSTALL_HINT = "apt-get install -y wrk nginx-light"
NGINX_HINT = "apt-get install -y nginx-light"

MODEL = "bench"
OIP_PATH = f"/v2/models/{MODEL}/infer"
OIP_BODY = json.dumps(
    {
        "inputs": [
            {"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}
        ]
    }
)
PLAIN_PATH = "/models/iris/predict"
PLAIN_BODY = json.dumps({"inputs": [[5.1, 3.5, 1.4, 0.2]]})
SPLIT = {"a": 90, "b": 10}
# Every request is one of this many users, named in this header; rollwise's configs read
# their sticky key from it.
STICKY_HEADER = "X-User"
STICKY_USERS = 10_000

# What rollwise holds itself to, as a proxy in front of a model server.
TARGET_CPU_US = 75.0
TARGET_ADDED_P50_MS = 0.1
TARGET_THROUGHPUT_RATIO = 0.8
# In-process throughput of two workers over one (serve --workers 2 vs 1), on two CPUs.
TARGET_WORKERS_RATIO = 1.5

# CPU the model-like upstream of rows (e) and (f) spends per inference by default.
DEFAULT_WORK_US = 250.0

CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- wrk ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    connections: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    socket_errors: int
    non_2xx: int


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.MULTILINE
)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse_wrk(output: str, connections: int) -> WrkResult:
    """Requests/s, request count and the 50/75/90/99 % latencies of ``wrk --latency``."""
    percentiles = {int(p): float(v) * _UNITS_MS[u] for p, v, u in _PERCENTILE.findall(output)}
    requests = _REQUESTS.search(output)
    rps = _RPS.search(output)
    if requests is None or rps is None or set(percentiles) != {50, 75, 90, 99}:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    socket_errors = _SOCKET_ERRORS.search(output)
    non_2xx = _NON_2XX.search(output)
    return WrkResult(
        connections=connections,
        duration_s=float(requests.group(2)) * _UNITS_MS[requests.group(3)] / 1e3,
        requests=int(requests.group(1)),
        rps=float(rps.group(1)),
        p50_ms=percentiles[50],
        p75_ms=percentiles[75],
        p90_ms=percentiles[90],
        p99_ms=percentiles[99],
        socket_errors=sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def lua_post_script(body: str, users: int = STICKY_USERS) -> str:
    """A wrk script that POSTs ``body`` as JSON on every request, each as the next of
    ``users`` users (``X-User: u0`` .. ``u<users - 1>``, then ``u0`` again).

    The requests are formatted once, in ``init``: ``request`` only hands out the next
    string, which is what wrk's documentation advises for a fast server (formatting a
    request per call would make wrk, not the server, the bottleneck)."""
    level = 0
    while f"]{'=' * level}]" in body:
        level += 1
    eq = "=" * level
    return (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [{eq}[{body}]{eq}]\n"
        f"local users = {users}\n"
        "local requests = {}\n"
        "local next_user = 0\n"
        "function init(args)\n"
        "  for i = 0, users - 1 do\n"
        f'    wrk.headers["{STICKY_HEADER}"] = "u" .. i\n'
        "    requests[i] = wrk.format()\n"
        "  end\n"
        "end\n"
        "function request()\n"
        "  local r = requests[next_user]\n"
        "  next_user = (next_user + 1) % users\n"
        "  return r\n"
        "end\n"
    )


# -- processes -----------------------------------------------------------------------------------


def taskset(cpu: int | Sequence[int] | None) -> list[str]:
    """The command prefix that runs a process on ``cpu`` (one CPU or several); none for None."""
    if cpu is None:
        return []
    cpus = [cpu] if isinstance(cpu, int) else list(cpu)
    return ["taskset", "-c", ",".join(str(c) for c in cpus)] if cpus else []


@dataclass
class Pinning:
    server_cpu: int | None
    load_cpu: int | None
    upstream_cpu: int | None
    note: str

    def prefix(self, cpu: int | Sequence[int] | None) -> list[str]:
        return taskset(cpu)

    @property
    def both(self) -> list[int] | None:
        """The two CPUs, for the gateway of the worker rows (g) to (j)."""
        if self.server_cpu is None or self.load_cpu is None:
            return None
        return sorted({self.server_cpu, self.load_cpu})


def choose_pinning(upstream_side: str = "server") -> Pinning:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        why = "fewer than 2 CPUs" if len(cpus) < 2 else "taskset is missing"
        return Pinning(None, None, None, f"no pinning ({why}): every process shares every CPU")
    server, load = cpus[0], cpus[1]
    if upstream_side == "server":
        note = (
            f"server side on CPU {server}: the OIP server, and the proxy or in-process server "
            f"under test; wrk and this script on CPU {load}"
        )
        return Pinning(server, load, server, note)
    note = (
        f"proxy or in-process server under test alone on CPU {server}; wrk, the OIP server "
        f"and this script on CPU {load}"
    )
    return Pinning(server, load, load, note)


def model_like_note(pin: Pinning) -> str:
    """Where rows (e), (f) and (k) run: the model-like server's CPU alone, the gateway by wrk."""
    if pin.server_cpu is None:
        return "no pinning, every process shares every CPU"
    return (
        f"the model-like OIP server alone on CPU {pin.server_cpu}, where the other rows' "
        f"servers sit idle; wrk, rollwise and this script on CPU {pin.load_cpu}"
    )


def workers_note(pin: Pinning) -> str:
    """Where rows (g) to (j) run: the gateway on both CPUs, with one worker or two."""
    if pin.server_cpu is None:
        return "no pinning, every process shares every CPU"
    both = ",".join(str(c) for c in pin.both or [])
    return (
        f"the gateway (supervisor and workers) on CPUs {both} with one worker as with two; "
        f"wrk and this script on CPU {pin.load_cpu}; in (g), (h) the model-like server on "
        f"CPU {pin.server_cpu}"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as file:
        stat = file.read()
    # The command name may hold spaces and parentheses: the fields start after the last ')'.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            continue
        if int(stat[stat.rindex(b")") + 2 :].split()[1]) == pid:
            found.append(int(entry))
    return found


def machine_busy_seconds() -> float:
    """CPU time every process on the machine spent in user and kernel mode so far."""
    with open("/proc/stat") as file:
        fields = file.readline().split()
    user, nice, system = (int(x) for x in fields[1:4])
    return (user + nice + system) / CLK_TCK


class ForeignLoad:
    """How much CPU processes other than the benchmark's own used while it measured."""

    def __init__(self, servers: Sequence[Server]) -> None:
        self.servers = servers
        self.start_wall = time.perf_counter()
        self.start_other = self._other()

    def _own(self) -> float:
        own = sum(server.cpu_seconds() for server in self.servers)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            own += usage.ru_utime + usage.ru_stime
        return own

    def _other(self) -> float:
        return machine_busy_seconds() - self._own()

    def cpus(self) -> float:
        """Other processes' CPU time over the wall time since the start, in CPUs."""
        wall = time.perf_counter() - self.start_wall
        return max(0.0, self._other() - self.start_other) / wall if wall > 0 else 0.0


class Server:
    """A server process under measurement, its output kept in a log file."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        port: int,
        log_dir: Path,
        *,
        with_children: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.with_children = with_children
        # Worker processes of a rollwise server (serve --workers N); 1 for any other.
        self.workers = 1
        self.is_rollwise = False
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            list(command),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        pid = self.proc.pid
        return [pid, *children_of(pid)] if self.with_children else [pid]

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.pids():
            # A child listed a moment ago may have exited since (a worker restarted).
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += proc_cpu_seconds(pid)
        return total

    def wait_listening(self, limit_s: float = 60.0) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on port {self.port} in {limit_s:g} s")

    def log_tail(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


def http(
    method: str, url: str, body: bytes | None = None, timeout_s: float = 5.0
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def wait_ready(server: Server, path: str, limit_s: float = 60.0) -> None:
    server.wait_listening(limit_s)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if http("GET", server.url + path)[0] == 200:
                return
        if server.proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} did not become ready:\n{server.log_tail()}")


def check_answer(server: Server, path: str, body: str, expect: bytes) -> None:
    status, answer = http("POST", server.url + path, body.encode())
    if status != 200 or expect not in answer:
        raise RuntimeError(f"{server.name} answered {status} {answer[:300]!r}")


# -- the set-up of each row ----------------------------------------------------------------------


def start_upstream(
    work: Path, pin: Pinning, name: str = "upstream", work_us: float = 0.0
) -> Server:
    """The OIP server; with ``work_us``, the model-like one of rows (e) and (f)."""
    port = free_port()
    model_like = work_us > 0
    server = Server(
        name,
        [
            *pin.prefix(pin.server_cpu if model_like else pin.upstream_cpu),
            sys.executable,
            str(HERE / "oip_upstream.py"),
            "--port",
            str(port),
            *(["--work-us", f"{work_us:g}"] if model_like else []),
        ],
        port,
        work,
    )
    wait_ready(server, "/v2/health/ready")
    return server


NGINX_CONF = """\
# Written by bench/gateway.py; run as: nginx -c {dir}/nginx.conf -g 'daemon off;'
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/nginx-body;
    proxy_temp_path {dir}/nginx-proxy;
    fastcgi_temp_path {dir}/nginx-fastcgi;
    uwsgi_temp_path {dir}/nginx-uwsgi;
    scgi_temp_path {dir}/nginx-scgi;
    upstream oip {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://oip;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def start_nginx(work: Path, pin: Pinning, upstream: Server) -> Server:
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if nginx is None:
        raise FileNotFoundError("nginx")
    port = free_port()
    folder = work / "nginx"
    folder.mkdir()
    # Debian starts nginx workers as another user, who must reach the temp paths.
    folder.chmod(0o755)
    work.chmod(0o755)
    conf = folder / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=folder, upstream_port=upstream.port, port=port))
    server = Server(
        "nginx",
        [
            *pin.prefix(pin.server_cpu),
            nginx,
            "-e",
            str(folder / "nginx-error.log"),
            "-c",
            str(conf),
            "-g",
            "daemon off;",
        ],
        port,
        work,
        with_children=True,
    )
    wait_ready(server, "/v2/health/ready")
    return server


ROLLWISE_HTTP_CONFIG = """\
store: sqlite:///{dir}/{name}.db
server: {{host: 127.0.0.1, port: {port}, routing_poll_interval_s: {poll}}}
models:
  {model}:
    sticky_key: header:{sticky}
    stable: a
    versions:
      a: {{backend: http, url: "{upstream}", model: {model}}}
      b: {{backend: http, url: "{upstream}", model: {model}}}
"""

ROLLWISE_REST_CONFIG = """\
store: sqlite:///{dir}/{name}.db
server: {{host: 127.0.0.1, port: {port}, routing_poll_interval_s: {poll}}}
models:
  {model}:
    sticky_key: header:{sticky}
    stable: a
    versions:
      a: {{backend: rest, url: "{upstream}", output_path: "$.outputs[0].data"}}
      b: {{backend: rest, url: "{upstream}", output_path: "$.outputs[0].data"}}
"""
REST_PATH = f"/proxy/{MODEL}{OIP_PATH}"
"""Row (k): the OIP route of the upstream, below the gateway's pass-through route."""

ROLLWISE_IRIS_CONFIG = """\
store: sqlite:///{dir}/{name}.db
server: {{host: 127.0.0.1, port: {port}}}
models:
  iris:
    sticky_key: header:{sticky}
    stable: v1
    versions:
      v1: {{backend: sklearn, path: "{model_path}"}}
"""


def rollwise_command() -> list[str]:
    script = Path(sys.executable).with_name("rollwise")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from rollwise.cli import main; main()"]


def serve_command(config: Path, rollwise: list[str] | None = None) -> list[str]:
    """``rollwise serve`` on ``config``, loopback without tokens, warnings only; ``rollwise``:
    the command that starts rollwise, if not ``rollwise_command()``."""
    return [
        *(rollwise or rollwise_command()),
        "serve",
        "--config",
        str(config),
        "--insecure-dev",
        "--log-level",
        "warning",
    ]


def start_rollwise(
    name: str,
    work: Path,
    config_text: str,
    port: int,
    cpus: int | Sequence[int] | None,
    http: str | None = None,
    workers: int | None = None,
) -> Server:
    """``rollwise serve`` on ``cpus``; ``workers``: its ``--workers`` (None: not given)."""
    config = work / f"{name}.yaml"
    config.write_text(config_text)
    command = [
        *taskset(cpus),
        *serve_command(config),
        *(["--http", http] if http else []),
        *(["--workers", str(workers)] if workers is not None else []),
    ]
    # With workers, its CPU is the supervisor's and theirs.
    server = Server(name, command, port, work, with_children=workers is not None)
    server.workers = workers or 1
    server.is_rollwise = True
    wait_ready(server, "/v2/health/ready")
    if server.workers > 1:
        wait_replicas(server, server.workers)
    return server


def wait_replicas(server: Server, count: int, limit_s: float = 60.0) -> None:
    """Wait until ``count`` replicas of the gateway are live: each worker heartbeats once
    it has started, and a readiness answer came from only one of them."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            _, answer = http("GET", f"{server.url}/api/v1/replicas")
            live = [r for r in json.loads(answer)["replicas"] if r["live"] and not r["stopped"]]
            if len(live) >= count:
                return
        if server.proc.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"{server.name}: {count} workers did not start:\n{server.log_tail()}")


# How often the bench's rollwise servers read routing from the store: a worker learns the
# routing another worker was given within this.
ROUTING_POLL_S = 1.0


def start_rollwise_http(
    work: Path,
    upstream: Server,
    cpus: int | Sequence[int] | None,
    name: str = "rollwise",
    server: str = "rollwise",
    workers: int | None = None,
    *,
    rest: bool = False,
) -> Server:
    """rollwise with two ``http`` versions of the bench model, routed 90/10, on ``cpus``;
    ``rest``: two ``rest`` versions instead (row (k))."""
    port = free_port()
    template = ROLLWISE_REST_CONFIG if rest else ROLLWISE_HTTP_CONFIG
    text = template.format(
        dir=work,
        name=name,
        port=port,
        model=MODEL,
        upstream=upstream.url,
        sticky=STICKY_HEADER,
        poll=ROUTING_POLL_S,
    )
    gateway = start_rollwise(name, work, text, port, cpus, server, workers)
    status, answer = http(
        "PUT",
        f"{gateway.url}/api/v1/models/{MODEL}/routing",
        json.dumps({"weights": SPLIT}).encode(),
    )
    if status != 200:
        raise RuntimeError(f"rollwise refused the routing: {status} {answer!r}")
    if gateway.workers > 1:
        # One worker took the change; the others apply it at their next read of the store.
        time.sleep(2.5 * ROUTING_POLL_S)
    # Asked over a new connection each time, so that with workers several of them answer.
    for _ in range(gateway.workers * 3):
        status, answer = http("GET", f"{gateway.url}/api/v1/models/{MODEL}")
        weights = {v["name"]: v["effective_weight"] for v in json.loads(answer)["versions"]}
        if weights != SPLIT:
            raise RuntimeError(f"rollwise routes {weights}, not {SPLIT}")
    return gateway


def served_split(server: Server) -> dict[str, int]:
    """Requests each version of the bench model served, as rollwise counted them."""
    _, answer = http("GET", f"{server.url}/api/v1/models/{MODEL}?window_s=86400")
    return {
        v["name"]: int((v["served"] or {}).get("requests", 0))
        for v in json.loads(answer)["versions"]
    }


def write_iris_model(work: Path) -> Path:
    import skops.io as sio

    from rollwise.example_models import V1_FILE, train_v1

    path = work / V1_FILE
    sio.dump(train_v1(), path)
    return path


def start_rollwise_iris(
    work: Path,
    model_path: Path,
    cpus: int | Sequence[int] | None,
    name: str = "rollwise-iris",
    workers: int | None = None,
) -> Server:
    port = free_port()
    text = ROLLWISE_IRIS_CONFIG.format(
        dir=work, name=name, port=port, model_path=model_path, sticky=STICKY_HEADER
    )
    return start_rollwise(name, work, text, port, cpus, workers=workers)


def start_starlette(work: Path, pin: Pinning, model_path: Path) -> Server:
    port = free_port()
    command = [
        *pin.prefix(pin.server_cpu),
        sys.executable,
        str(HERE / "gateway_starlette.py"),
        "--model",
        str(model_path),
        "--port",
        str(port),
    ]
    server = Server("starlette", command, port, work)
    server.wait_listening()
    return server


# -- what a rollwise server reports of itself, read before it stops ------------------------------


@dataclass(frozen=True)
class ProcessMemory:
    """One process's memory in kB: resident (RSS), its share of pages shared with other
    processes (PSS), and the pages only it maps (USS), which its exit would free."""

    pid: int
    role: str
    rss_kb: int | None
    pss_kb: int | None
    uss_kb: int | None


def _kb_fields(path: str, names: Sequence[str]) -> dict[str, int]:
    """``Name:  123 kB`` lines of a /proc file, for the names asked; {} if unreadable."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError, IndexError), open(path) as file:
        for line in file:
            key, _, rest = line.partition(":")
            if key in names:
                found[key] = int(rest.split()[0])
    return found


_PRIVATE = ("Private_Clean", "Private_Dirty", "Private_Hugetlb")


def process_memory(pid: int, role: str) -> ProcessMemory:
    rss = _kb_fields(f"/proc/{pid}/status", ("VmRSS",)).get("VmRSS")
    # smaps_rollup: Linux 4.14 or later; older kernels leave PSS and USS unknown.
    rollup = _kb_fields(f"/proc/{pid}/smaps_rollup", ("Pss", *_PRIVATE))
    uss = sum(rollup.get(k, 0) for k in _PRIVATE) if "Private_Dirty" in rollup else None
    return ProcessMemory(pid, role, rss, rollup.get("Pss"), uss)


def server_memory(server: Server) -> list[ProcessMemory]:
    """Every process of a rollwise server: with workers the supervisor and each worker."""
    pid = server.proc.pid
    if server.workers == 1:
        return [process_memory(pid, "gateway")]
    return [
        process_memory(pid, "supervisor"),
        *(process_memory(child, "worker") for child in sorted(children_of(pid))),
    ]


def gc_longest_pause(server: Server) -> dict[str, Any]:
    """The longest garbage-collector pause a rollwise server's processes report in
    /metrics since they started serving, per replica. A scrape reaches one worker of
    several, whichever accepts the connection: a server with workers is scraped over new
    connections until each has answered (or 20 tries per worker)."""
    from prometheus_client.parser import text_string_to_metric_families

    per_replica: dict[str, float | None] = {}
    for _ in range(1 if server.workers == 1 else 20 * server.workers):
        status, body = http("GET", f"{server.url}/metrics")
        if status != 200:
            break
        replica, longest = "", None
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == "rollwise_replica_info":
                    replica = sample.labels.get("replica", "")
                elif sample.name == "rollwise_gc_longest_pause_seconds":
                    longest = max(longest or 0.0, sample.value)
        per_replica[replica] = longest
        if len(per_replica) >= server.workers:
            break
    known = [v for v in per_replica.values() if v is not None]
    return {
        "longest_s": max(known) if known else None,
        "per_replica_s": per_replica,
        "workers": server.workers,
    }


# -- measuring -----------------------------------------------------------------------------------


@dataclass
class Target:
    key: str
    label: str
    server: Server
    path: str
    script: Path
    upstream: Server | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url + self.path


class Bench:
    def __init__(self, args: argparse.Namespace, pin: Pinning, wrk: str) -> None:
        self.args = args
        self.pin = pin
        self.wrk = wrk
        self.wrk_cpus = 0.0

    def wrk_run(self, target: Target, connections: int, seconds: int) -> WrkResult:
        command = [
            *self.pin.prefix(self.pin.load_cpu),
            self.wrk,
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(target.script),
            target.url,
        ]
        out = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
        if out.returncode != 0:
            raise RuntimeError(f"wrk failed on {target.label}:\n{out.stdout}\n{out.stderr}")
        result = parse_wrk(out.stdout, connections)
        if result.non_2xx or result.socket_errors:
            print(
                f"  ! {target.label}: {result.non_2xx} non-2xx answers, "
                f"{result.socket_errors} socket errors",
                file=sys.stderr,
            )
        return result

    def measured(
        self, target: Target, connections: int, seconds: int
    ) -> tuple[WrkResult, float | None, float | None]:
        """One wrk run; CPU µs per request of the server and of the upstream behind it.
        The CPUs wrk itself used (its CPU time over the run's) go to ``self.wrk_cpus``."""
        cpu0 = target.server.cpu_seconds()
        up0 = target.upstream.cpu_seconds() if target.upstream else 0.0
        # wrk is this script's only child that ends during the run: the growth of the
        # children's usage is its CPU time.
        children0 = _children_cpu_seconds()
        result = self.wrk_run(target, connections, seconds)
        self.wrk_cpus = (
            (_children_cpu_seconds() - children0) / result.duration_s if result.duration_s else 0.0
        )
        cpu = target.server.cpu_seconds() - cpu0
        up = target.upstream.cpu_seconds() - up0 if target.upstream else None
        if not result.requests:
            return result, None, None
        per_request = 1e6 / result.requests
        return result, cpu * per_request, (up * per_request if up is not None else None)

    def warm_up(self, target: Target) -> None:
        args = self.args
        self.wrk_run(target, args.connections, args.warmup)
        self.wrk_run(target, 1, 1)

    def run_proxy_round(self, target: Target, number: int) -> None:
        args = self.args
        one, cpu_one, _ = self.measured(target, 1, args.latency_duration)
        many, cpu_many, up_many = self.measured(target, args.connections, args.duration)
        run = {
            "run": number,
            "c1": asdict(one),
            "cN": asdict(many),
            "cpu_us_per_req_c1": cpu_one,
            "cpu_us_per_req_cN": cpu_many,
            "upstream_cpu_us_per_req_cN": up_many,
            "wrk_cpus_cN": self.wrk_cpus,
        }
        target.runs.append(run)
        print(
            f"# run {number} {target.label:<32} {many.rps:>8.0f} req/s@{args.connections}  "
            f"p50@1 {one.p50_ms:.3f} ms  p99@1 {one.p99_ms:.3f} ms  "
            f"p50@{args.connections} {many.p50_ms:.2f} ms  CPU {_fmt(cpu_many, '.1f')} µs/req",
            file=sys.stderr,
            flush=True,
        )

    def run_throughput_round(self, target: Target, number: int) -> None:
        args = self.args
        many, cpu_many, _ = self.measured(target, args.connections, args.duration)
        target.runs.append(
            {
                "run": number,
                "cN": asdict(many),
                "cpu_us_per_req_cN": cpu_many,
                "wrk_cpus_cN": self.wrk_cpus,
            }
        )
        print(
            f"# run {number} {target.label:<32} {many.rps:>8.0f} req/s@{args.connections}  "
            f"p50@{args.connections} {many.p50_ms:.2f} ms  CPU {_fmt(cpu_many, '.1f')} µs/req",
            file=sys.stderr,
            flush=True,
        )


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def med(runs: Sequence[dict[str, Any]], get: Callable[[dict[str, Any]], Any]) -> float | None:
    values = [v for v in (get(r) for r in runs) if v is not None]
    return float(statistics.median(values)) if values else None


def summarize(target: Target) -> dict[str, Any]:
    runs = target.runs
    summary: dict[str, Any] = {
        "rps_cN": med(runs, lambda r: r["cN"]["rps"]),
        "p50_ms_cN": med(runs, lambda r: r["cN"]["p50_ms"]),
        "p99_ms_cN": med(runs, lambda r: r["cN"]["p99_ms"]),
        "cpu_us_per_req_cN": med(runs, lambda r: r["cpu_us_per_req_cN"]),
        "wrk_cpus_cN": med(runs, lambda r: r.get("wrk_cpus_cN")),
    }
    if runs and "c1" in runs[0]:
        summary |= {
            "p50_ms_c1": med(runs, lambda r: r["c1"]["p50_ms"]),
            "p99_ms_c1": med(runs, lambda r: r["c1"]["p99_ms"]),
            "rps_c1": med(runs, lambda r: r["c1"]["rps"]),
            "cpu_us_per_req_c1": med(runs, lambda r: r["cpu_us_per_req_c1"]),
            "upstream_cpu_us_per_req_cN": med(runs, lambda r: r["upstream_cpu_us_per_req_cN"]),
        }
    return summary


# -- the report ----------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def ratios(summaries: dict[str, dict[str, Any]], pin: Pinning) -> dict[str, Any]:
    direct, rollwise = summaries["direct"], summaries["rollwise"]
    nginx = summaries.get("nginx")
    out: dict[str, Any] = {}
    if not direct["rps_cN"]:
        # Every ratio is against this row: say so instead of dividing by zero.
        raise RuntimeError(
            "row (a), direct to the OIP server, completed no requests at 64 connections; "
            "wrk's output above says why (an overloaded machine, a server that failed)"
        )
    throughput = rollwise["rps_cN"] / direct["rps_cN"]
    added = rollwise["p50_ms_c1"] - direct["p50_ms_c1"]
    cpu = rollwise["cpu_us_per_req_cN"]
    out["rollwise_vs_direct_rps_cN"] = {
        "value": throughput,
        "target": f">= {TARGET_THROUGHPUT_RATIO}",
        "verdict": verdict(throughput >= TARGET_THROUGHPUT_RATIO),
    }
    out["rollwise_added_p50_ms_c1"] = {
        "value": added,
        "target": f"<= {TARGET_ADDED_P50_MS}",
        "verdict": verdict(added <= TARGET_ADDED_P50_MS),
    }
    out["rollwise_cpu_us_per_req"] = {
        "value": cpu,
        "target": f"<= {TARGET_CPU_US}",
        "verdict": verdict(cpu is not None and cpu <= TARGET_CPU_US),
    }
    if nginx is None:
        out["rollwise_vs_nginx_cpu_per_req"] = {"value": None, "note": "nginx row skipped"}
    else:
        out["rollwise_vs_nginx_cpu_per_req"] = {
            "value": cpu / nginx["cpu_us_per_req_cN"] if nginx["cpu_us_per_req_cN"] else None
        }
        out["nginx_vs_direct_rps_cN"] = {"value": nginx["rps_cN"] / direct["rps_cN"]}
        out["nginx_added_p50_ms_c1"] = {"value": nginx["p50_ms_c1"] - direct["p50_ms_c1"]}
    oip_cpu = direct["cpu_us_per_req_cN"]
    if pin.upstream_cpu == pin.server_cpu and oip_cpu and cpu is not None:
        # Sharing a CPU with the OIP server, a proxy can at most reach this share of the
        # direct throughput: the CPU time of one request direct over that through the proxy.
        out["trivial_upstream_bound_rps_cN"] = {
            "value": oip_cpu / (oip_cpu + cpu),
            "note": "OIP CPU / (OIP CPU + rollwise CPU) per request, both on one CPU",
        }
    if "model_direct" in summaries and "model_rollwise" in summaries:
        model_direct, model_rollwise = summaries["model_direct"], summaries["model_rollwise"]
        model_throughput = model_rollwise["rps_cN"] / model_direct["rps_cN"]
        out["model_like_rollwise_vs_direct_rps_cN"] = {
            "value": model_throughput,
            "target": f">= {TARGET_THROUGHPUT_RATIO}",
            "verdict": verdict(model_throughput >= TARGET_THROUGHPUT_RATIO),
        }
        out["model_like_rollwise_added_p50_ms_c1"] = {
            "value": model_rollwise["p50_ms_c1"] - model_direct["p50_ms_c1"]
        }
    if "inproc_rollwise" in summaries and "inproc_starlette" in summaries:
        out["inproc_rollwise_vs_starlette_rps_cN"] = {
            "value": summaries["inproc_rollwise"]["rps_cN"]
            / summaries["inproc_starlette"]["rps_cN"]
        }
    one, two = summaries.get("workers_inproc_1"), summaries.get("workers_inproc_2")
    if one and two and one["rps_cN"]:
        scaling = two["rps_cN"] / one["rps_cN"]
        out["inproc_workers_2_vs_1_rps_cN"] = {
            "value": scaling,
            "target": f">= {TARGET_WORKERS_RATIO}",
            "verdict": verdict(scaling >= TARGET_WORKERS_RATIO),
        }
    one_model, two_model = summaries.get("workers_model_1"), summaries.get("workers_model_2")
    if one_model and two_model and one_model["rps_cN"]:
        out["model_like_workers_2_vs_1_rps_cN"] = {
            "value": two_model["rps_cN"] / one_model["rps_cN"]
        }
        direct_model = summaries.get("model_direct")
        if direct_model and direct_model["rps_cN"]:
            out["model_like_workers_2_vs_direct_rps_cN"] = {
                "value": two_model["rps_cN"] / direct_model["rps_cN"]
            }
    return out


def print_report(
    targets: Sequence[Target],
    summaries: dict[str, dict[str, Any]],
    result_ratios: dict[str, Any],
    notes: Sequence[str],
    args: argparse.Namespace,
    model_note: str = "",
    own: OwnReport | None = None,
) -> None:
    n = args.connections
    model_like = [t for t in targets if t.key.startswith("model_")]
    proxied = [t for t in targets if not t.key.startswith(("inproc", "model_", "workers_"))]
    inproc = [t for t in targets if t.key.startswith("inproc")]
    workers = [t for t in targets if t.key.startswith("workers_")]

    def proxy_table(title: str, rows: Sequence[Target]) -> None:
        header = (
            f"{title:<34} {'req/s @' + str(n):>10} "
            f"{'p50 @1':>8} {'p99 @1':>8} {'p50 @' + str(n):>8} {'p99 @' + str(n):>8} "
            f"{'proxy CPU':>10} {'OIP CPU':>8}"
        )
        print(header)
        print("-" * len(header))
        for target in rows:
            s = summaries[target.key]
            direct = target.upstream is None
            cpu = None if direct else s["cpu_us_per_req_cN"]
            upstream_cpu = s["cpu_us_per_req_cN"] if direct else s["upstream_cpu_us_per_req_cN"]
            print(
                f"{target.label:<34} {s['rps_cN']:>10.0f} {s['p50_ms_c1']:>8.3f} "
                f"{s['p99_ms_c1']:>8.3f} {s['p50_ms_cN']:>8.2f} {s['p99_ms_cN']:>8.2f} "
                f"{_fmt(cpu, '.1f'):>10} {_fmt(upstream_cpu, '.1f'):>8}"
            )

    print()
    proxy_table("proxy in front of the OIP server", proxied)
    print(
        f"(latencies in ms; CPU in µs per request at {n} connections: the proxy's process, "
        "nginx's master and worker together, and the OIP server's)"
    )
    print()
    if model_like:
        proxy_table(f"model-like upstream ({args.work_us:g} µs CPU)", model_like)
        print(
            f"(latencies in ms; CPU in µs per request at {n} connections: rollwise's process and "
            f"the OIP server's, which spins {args.work_us:g} µs per inference as a small model "
            "would)"
        )
        print(f"(pinning of (e), (f), (k): {model_note})")
        print()

    def line(label: str, key: str, unit: str, spec: str, target: str, width: int = 46) -> None:
        entry = result_ratios.get(key)
        if entry is None:
            return
        if entry["value"] is None:
            print(f"  {label:<{width}} {'n/a':>10}   {entry.get('note', '')}")
            return
        value = format(entry["value"], spec) + unit
        tail = f"target {target:<10} {entry['verdict']}" if "verdict" in entry else ""
        print(f"  {label:<{width}} {value:>10}   {tail}")

    print("rollwise against its targets")
    line(
        f"throughput @{n}, rollwise / direct",
        "rollwise_vs_direct_rps_cN",
        "×",
        ".2f",
        f"≥ {TARGET_THROUGHPUT_RATIO}×",
    )
    line(
        "added p50 @1 vs direct",
        "rollwise_added_p50_ms_c1",
        " ms",
        "+.3f",
        f"≤ {TARGET_ADDED_P50_MS} ms",
    )
    line(
        "CPU per proxied request",
        "rollwise_cpu_us_per_req",
        " µs",
        ".1f",
        f"≤ {TARGET_CPU_US:g} µs",
    )
    line("CPU per request, rollwise / nginx", "rollwise_vs_nginx_cpu_per_req", "×", ".1f", "")
    line(f"throughput @{n}, nginx / direct", "nginx_vs_direct_rps_cN", "×", ".2f", "")
    line("added p50 @1 of nginx vs direct", "nginx_added_p50_ms_c1", " ms", "+.3f", "")
    line(
        f"throughput @{n}, rollwise / direct (model-like upstream)",
        "model_like_rollwise_vs_direct_rps_cN",
        "×",
        ".2f",
        f"≥ {TARGET_THROUGHPUT_RATIO}×",
        55,
    )
    line(
        "added p50 @1 (model-like upstream)",
        "model_like_rollwise_added_p50_ms_c1",
        " ms",
        "+.3f",
        "",
        55,
    )
    bound = result_ratios.get("trivial_upstream_bound_rps_cN")
    if bound is not None:
        oip = format(summaries["direct"]["cpu_us_per_req_cN"], ".0f")
        tail = "; the model-like row is what a user would see" if model_like else ""
        print(
            f"  note: against a ~{oip} µs upstream any proxy sharing its CPU is bounded by "
            f"{oip}/({oip} + proxy CPU) (rollwise: {bound['value']:.2f}×){tail}"
        )
    if inproc:
        print()
        header = (
            f"{'in-process iris v1 (sklearn, skops)':<34} {'req/s @' + str(n):>10} "
            f"{'p50 @' + str(n):>8} {'p99 @' + str(n):>8} {'CPU µs/req':>11}"
        )
        print(header)
        print("-" * len(header))
        for target in inproc:
            s = summaries[target.key]
            print(
                f"{target.label:<34} {s['rps_cN']:>10.0f} {s['p50_ms_cN']:>8.2f} "
                f"{s['p99_ms_cN']:>8.2f} {_fmt(s['cpu_us_per_req_cN'], '.1f'):>11}"
            )
        line(
            f"throughput @{n}, rollwise / bare Starlette",
            "inproc_rollwise_vs_starlette_rps_cN",
            "×",
            ".2f",
            "",
        )
    if workers:
        print()
        header = (
            f"{'rollwise serve --workers N':<34} {'req/s @' + str(n):>10} "
            f"{'p50 @' + str(n):>8} {'p99 @' + str(n):>8} {'CPU µs/req':>11} {'wrk CPUs':>9}"
        )
        print(header)
        print("-" * len(header))
        for target in workers:
            s = summaries[target.key]
            print(
                f"{target.label:<34} {s['rps_cN']:>10.0f} {s['p50_ms_cN']:>8.2f} "
                f"{s['p99_ms_cN']:>8.2f} {_fmt(s['cpu_us_per_req_cN'], '.1f'):>11} "
                f"{_fmt(s['wrk_cpus_cN'], '.2f'):>9}"
            )
        print(
            "(CPU: the gateway's processes together, supervisor and workers; wrk CPUs: the "
            "CPUs wrk itself used, which two workers cannot have)"
        )
        if own is not None:
            print(f"(pinning of (g) to (j): {own.workers_note})")
        line(
            f"throughput @{n}, in-process, 2 workers / 1 worker",
            "inproc_workers_2_vs_1_rps_cN",
            "×",
            ".2f",
            f"≥ {TARGET_WORKERS_RATIO}×",
            55,
        )
        line(
            f"throughput @{n}, model-like, 2 workers / 1 worker",
            "model_like_workers_2_vs_1_rps_cN",
            "×",
            ".2f",
            "",
            55,
        )
        line(
            f"throughput @{n}, model-like, 2 workers / direct",
            "model_like_workers_2_vs_direct_rps_cN",
            "×",
            ".2f",
            "",
            55,
        )
    if own is not None:
        print_own(targets, own)
    for note in notes:
        print(f"note: {note}")


@dataclass
class OwnReport:
    """What the rollwise servers said of themselves before they stopped."""

    gc: dict[str, dict[str, Any]] = field(default_factory=dict)
    memory: dict[str, list[ProcessMemory]] = field(default_factory=dict)
    workers_note: str = ""


def print_own(targets: Sequence[Target], own: OwnReport) -> None:
    labels = {t.key: t.label for t in targets}
    if own.memory:
        print()
        header = (
            f"{'memory after the runs (MB)':<34} {'process':>16} {'RSS':>7} {'PSS':>7} {'USS':>7}"
        )
        print(header)
        print("-" * len(header))

        def mb(kb: int | None) -> str:
            return "-" if kb is None else f"{kb / 1024:.1f}"

        for key, processes in own.memory.items():
            for number, process in enumerate(processes):
                label = labels[key] if number == 0 else ""
                print(
                    f"{label:<34} {process.role + ' ' + str(process.pid):>16} "
                    f"{mb(process.rss_kb):>7} {mb(process.pss_kb):>7} {mb(process.uss_kb):>7}"
                )
        print(
            "(RSS counts every page a process maps; PSS shares each shared page among its "
            "mappers; USS, the pages only that process maps, is what one more worker costs)"
        )
    if own.gc:
        print()
        print("longest GC pause of each rollwise server since it started serving (/metrics)")
        for key, found in own.gc.items():
            longest = found["longest_s"]
            value = "n/a" if longest is None else f"{longest * 1e3:.2f} ms"
            seen = ""
            if found["workers"] > 1:
                reached = len(found["per_replica_s"])
                seen = f"   (the longest of the {reached} of {found['workers']} workers reached)"
            print(f"  {labels[key]:<46} {value:>10}{seen}")


# -- the driver ----------------------------------------------------------------------------------


@contextlib.contextmanager
def servers_stopped(servers: list[Server]) -> Iterator[None]:
    try:
        yield
    finally:
        for server in reversed(servers):
            with contextlib.suppress(Exception):
                server.stop()


def tool_versions(wrk: str) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    versions["wrk"] = (out.stdout or out.stderr).splitlines()[0].strip() if out.stdout else ""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if os.access(nginx, os.X_OK):
        out = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
        versions["nginx"] = out.stderr.strip().removeprefix("nginx version: ")
    with contextlib.suppress(ImportError):
        import rollwise

        versions["rollwise"] = rollwise.__version__
        versions["rollwise_build"] = build_kind()
    return versions


def build_kind() -> str:
    """Which rollwise the gateways run: compiled (``make bench`` puts the wheel's tree
    first on PYTHONPATH) or the pure Python source."""
    try:
        from rollwise.compilation import COMPILED_MODULES, compiled_here
    except ImportError:
        return "pure Python (a version without rollwise.compilation)"
    compiled = len(compiled_here())
    if compiled == 0:
        return "pure Python (no compiled module)"
    return f"compiled with mypyc ({compiled} of {len(COMPILED_MODULES)} request-path modules)"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short run: a smoke check")
    parser.add_argument("--runs", type=int, help="measured runs per row (default 3; quick 1)")
    # wrk takes whole seconds only.
    parser.add_argument("--duration", type=int, help="seconds per 64-connection run (5)")
    parser.add_argument("--latency-duration", type=int, help="seconds per 1-connection run (4)")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up per row (3)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--upstream-cpu",
        choices=("server", "load"),
        default="server",
        help="put the OIP server on the CPU under test (default) or on wrk's",
    )
    parser.add_argument("--no-inprocess", action="store_true", help="skip the iris rows (d)")
    parser.add_argument(
        "--work-us",
        type=float,
        default=DEFAULT_WORK_US,
        help=f"µs of CPU the model-like upstream of rows (e), (f) spends per request "
        f"(default {DEFAULT_WORK_US:g})",
    )
    parser.add_argument(
        "--no-model-like",
        action="store_true",
        help="skip the model-like rows (e), (f), (g), (h), (k)",
    )
    parser.add_argument(
        "--no-workers", action="store_true", help="skip the serve --workers rows (g) to (j)"
    )
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/gateway-*)")
    args = parser.parse_args()
    quick = {"runs": 1, "duration": 2, "latency_duration": 1, "warmup": 1}
    full = {"runs": 3, "duration": 5, "latency_duration": 4, "warmup": 3}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.work_us <= 0:
        parser.error("--work-us must be more than 0 (use --no-model-like to skip the rows)")

    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit(
            f"wrk is not installed; install it (and nginx for the nginx row) with: {INSTALL_HINT}"
        )
    pin = choose_pinning(args.upstream_cpu)
    if pin.load_cpu is not None:
        # This script and whatever it starts unpinned stay off the CPU under test.
        os.sched_setaffinity(0, {pin.load_cpu})
    started = time.perf_counter()
    notes: list[str] = [pin.note]
    # Printed under the model-like table and kept in the JSON's settings.
    model_note = "" if args.no_model_like else model_like_note(pin)
    targets: list[Target] = []
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="rollwise-bench-") as tmp, servers_stopped(servers):
        work = Path(tmp)
        oip_lua = work / "post-oip.lua"
        oip_lua.write_text(lua_post_script(OIP_BODY))
        plain_lua = work / "post-plain.lua"
        plain_lua.write_text(lua_post_script(PLAIN_BODY))

        own = OwnReport(workers_note="" if args.no_workers else workers_note(pin))
        upstream = start_upstream(work, pin)
        servers.append(upstream)
        check_answer(upstream, OIP_PATH, OIP_BODY, b'"outputs"')
        targets.append(
            Target("direct", "(a) direct to the OIP server", upstream, OIP_PATH, oip_lua)
        )
        try:
            nginx = start_nginx(work, pin, upstream)
        except FileNotFoundError:
            notes.append(f"nginx row skipped: nginx is not installed ({NGINX_HINT})")
            print(f"# nginx is not installed, its row is skipped ({NGINX_HINT})", file=sys.stderr)
        else:
            servers.append(nginx)
            check_answer(nginx, OIP_PATH, OIP_BODY, b'"outputs"')
            targets.append(
                Target("nginx", "(b) nginx → OIP server", nginx, OIP_PATH, oip_lua, upstream)
            )
        gateway = start_rollwise_http(work, upstream, pin.server_cpu)
        servers.append(gateway)
        check_answer(gateway, OIP_PATH, OIP_BODY, b'"outputs"')
        targets.append(
            Target(
                "rollwise", "(c) rollwise 90/10 → OIP server", gateway, OIP_PATH, oip_lua, upstream
            )
        )
        on_uvicorn = start_rollwise_http(
            work, upstream, pin.server_cpu, "rollwise-uvicorn", "uvicorn"
        )
        servers.append(on_uvicorn)
        check_answer(on_uvicorn, OIP_PATH, OIP_BODY, b'"outputs"')
        targets.append(
            Target(
                "rollwise_uvicorn",
                "(c') the same on uvicorn",
                on_uvicorn,
                OIP_PATH,
                oip_lua,
                upstream,
            )
        )
        model_gateway: Server | None = None
        if not args.no_model_like:
            model_upstream = start_upstream(work, pin, "model-upstream", args.work_us)
            servers.append(model_upstream)
            check_answer(model_upstream, OIP_PATH, OIP_BODY, b'"outputs"')
            model_gateway = start_rollwise_http(
                work, model_upstream, pin.load_cpu, "rollwise-model"
            )
            servers.append(model_gateway)
            check_answer(model_gateway, OIP_PATH, OIP_BODY, b'"outputs"')
            targets += [
                Target(
                    "model_direct",
                    "(e) direct to model-like server",
                    model_upstream,
                    OIP_PATH,
                    oip_lua,
                ),
                Target(
                    "model_rollwise",
                    "(f) rollwise 90/10 → model-like",
                    model_gateway,
                    OIP_PATH,
                    oip_lua,
                    model_upstream,
                ),
            ]
            rest_gateway = start_rollwise_http(
                work, model_upstream, pin.load_cpu, "rollwise-rest", rest=True
            )
            servers.append(rest_gateway)
            check_answer(rest_gateway, REST_PATH, OIP_BODY, b'"outputs"')
            targets.append(
                Target(
                    "model_rest",
                    "(k) rollwise rest → model-like",
                    rest_gateway,
                    REST_PATH,
                    oip_lua,
                    model_upstream,
                )
            )
            if not args.no_workers:
                for count, letter in ((1, "g"), (2, "h")):
                    server = start_rollwise_http(
                        work, model_upstream, pin.both, f"rollwise-model-w{count}", workers=count
                    )
                    servers.append(server)
                    check_answer(server, OIP_PATH, OIP_BODY, b'"outputs"')
                    targets.append(
                        Target(
                            f"workers_model_{count}",
                            f"({letter}) --workers {count} → model-like",
                            server,
                            OIP_PATH,
                            oip_lua,
                            model_upstream,
                        )
                    )
        inproc: list[Target] = []
        if not args.no_inprocess:
            model_path = write_iris_model(work)
            iris = start_rollwise_iris(work, model_path, pin.server_cpu)
            servers.append(iris)
            starlette = start_starlette(work, pin, model_path)
            servers.append(starlette)
            for server in (iris, starlette):
                check_answer(server, PLAIN_PATH, PLAIN_BODY, b'"outputs"')
            inproc = [
                Target("inproc_rollwise", "(d) rollwise, in-process", iris, PLAIN_PATH, plain_lua),
                Target(
                    "inproc_starlette",
                    "(d) bare Starlette, same model",
                    starlette,
                    PLAIN_PATH,
                    plain_lua,
                ),
            ]
            if not args.no_workers:
                for count, letter in ((1, "i"), (2, "j")):
                    server = start_rollwise_iris(
                        work, model_path, pin.both, f"rollwise-iris-w{count}", count
                    )
                    servers.append(server)
                    check_answer(server, PLAIN_PATH, PLAIN_BODY, b'"outputs"')
                    inproc.append(
                        Target(
                            f"workers_inproc_{count}",
                            f"({letter}) --workers {count}, in-process",
                            server,
                            PLAIN_PATH,
                            plain_lua,
                        )
                    )
            targets.extend(inproc)
        print(
            f"# {len(targets)} rows, {args.runs} run(s) each: {args.latency_duration:g} s at 1 "
            f"connection, {args.duration:g} s at {args.connections}; {pin.note}",
            file=sys.stderr,
            flush=True,
        )
        bench = Bench(args, pin, wrk)
        foreign = ForeignLoad(servers)
        for target in targets:
            bench.warm_up(target)
        proxies = [t for t in targets if t not in inproc]
        for number in range(1, args.runs + 1):
            # Rotate the order so that no row always runs first or last.
            shift = (number - 1) % len(proxies)
            for target in proxies[shift:] + proxies[:shift]:
                bench.run_proxy_round(target, number)
            for target in inproc if number % 2 else inproc[::-1]:
                bench.run_throughput_round(target, number)
        split = served_split(gateway)
        model_split = served_split(model_gateway) if model_gateway is not None else {}
        foreign_cpus = foreign.cpus()
        # Read while the servers still run: they stop when this block ends.
        for target in targets:
            if target.server.is_rollwise:
                own.gc[target.key] = gc_longest_pause(target.server)
            if target.key.startswith("workers_"):
                own.memory[target.key] = server_memory(target.server)

    if foreign_cpus > 0.1:
        notes.append(
            f"other processes on this machine used {foreign_cpus:.2f} CPU on average while "
            "the benchmark ran: its figures are disturbed, rerun on a quiet machine"
        )

    summaries = {t.key: summarize(t) for t in targets}
    result_ratios = ratios(summaries, pin)
    for row, served in (("", split), (" (f)", model_split)):
        total = sum(served.values())
        if total:
            shares = ", ".join(f"{v} {100 * n / total:.1f} %" for v, n in served.items())
            notes.append(f"rollwise{row} served {total} requests: {shares} (configured {SPLIT})")
    elapsed = time.perf_counter() - started
    print_report(targets, summaries, result_ratios, notes, args, model_note, own)
    print(
        f"\n{args.runs} run(s) per row, medians; wrk -t1; {os.cpu_count()} CPUs; "
        f"python {platform.python_version()}; {elapsed:.0f} s\nrollwise build: {build_kind()}"
    )

    document = {
        "benchmark": "gateway",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "elapsed_s": elapsed,
        "settings": {
            "runs": args.runs,
            "duration_s": args.duration,
            "latency_duration_s": args.latency_duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "quick": args.quick,
            "pinning": asdict(pin),
            "cpus": os.cpu_count(),
            "split": SPLIT,
            "model_like": None
            if args.no_model_like
            else {"work_us": args.work_us, "pinning": model_note},
            "workers": None if args.no_workers else {"pinning": own.workers_note},
            "sticky": {"header": STICKY_HEADER, "users": STICKY_USERS},
        },
        "versions": tool_versions(wrk),
        "targets": {
            t.key: {
                "label": t.label,
                "url_path": t.path,
                "median": summaries[t.key],
                "runs": t.runs,
            }
            for t in targets
        },
        "ratios": result_ratios,
        "gc_longest_pause": own.gc,
        "memory_kb": {key: [asdict(p) for p in found] for key, found in own.memory.items()},
        "rollwise_served_split": split,
        "rollwise_model_like_served_split": model_split,
        "foreign_load_cpus": foreign_cpus,
        "notes": notes,
    }
    out = args.out or RESULTS / f"gateway-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
