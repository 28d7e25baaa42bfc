"""``rollwise serve --workers 2``: a supervisor, two worker processes, one port.

Traffic here mostly opens one connection per request, as a load balancer's
health-checked pool or a fresh client does, and each request's client port says which
connection it was: the workers' sockets are read from /proc, so a test can tell exactly
which requests a worker held when it was killed. Keep-alive traffic (httpx clients that
reuse their connections, sending the next request as soon as the last is answered) is
the other kind a rolling restart must not fail.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from rollwise.controller import LEASE_NAME
from rollwise.store import open_store
from support.gateway import GatewayProcess, eventually, workers_of

SLOW_MS = 1000
"""How long a request to the ``slow`` model takes: it is surely in flight when its worker
is killed a moment after the worker took it."""


def workers_config(store: str) -> dict[str, Any]:
    return {
        "store": store,
        "server": {
            "workers": 2,
            "flush_interval_s": 0.2,
            "routing_poll_interval_s": 0.2,
            "heartbeat_interval_s": 0.5,
            "heartbeat_timeout_s": 3,
        },
        "controller": {"interval_s": 0.2, "lease_ttl_s": 2.0},
        "models": {
            "m": {"stable": "a", "versions": {"a": {"backend": "fake", "label": 0}}},
            "slow": {
                "stable": "s",
                "versions": {"s": {"backend": "fake", "label": 0, "latency_ms": SLOW_MS}},
            },
            "counted": {"stable": "c", "versions": {"c": {"backend": "fake", "label": 0}}},
            "r": {
                "stable": "a",
                "versions": {
                    "a": {"backend": "fake", "label": 0},
                    "b": {"backend": "fake", "label": 1},
                },
            },
        },
    }


# -- one request per connection, with the connection's client port -------------------------


@dataclass(frozen=True)
class Outcome:
    client_port: int
    model: str
    status: int | None
    """None: no answer (refused, reset, or closed before a whole response)."""
    outputs: Any = None
    started_s: float = 0.0


def predict(port: int, model: str, timeout_s: float = 20.0) -> Outcome:
    body = b'{"inputs": [[1.0]]}'
    head = (
        f"POST /models/{model}/predict HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode()
    started_s = time.monotonic()
    client_port = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            client_port = sock.getsockname()[1]
            sock.sendall(head + body)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
    except OSError:
        return Outcome(client_port, model, None, started_s=started_s)
    header, _, payload = received.partition(b"\r\n\r\n")
    lines = header.split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1.1 "):
        return Outcome(client_port, model, None, started_s=started_s)
    length = next(
        (int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length")),
        -1,
    )
    if length != len(payload):
        return Outcome(client_port, model, None, started_s=started_s)
    status = int(lines[0].split()[1])
    outputs = orjson.loads(payload).get("outputs") if status == 200 else None
    return Outcome(client_port, model, status, outputs, started_s)


def predict_kept_alive(client: httpx.Client, model: str) -> Outcome:
    """A request on ``client``'s pool of keep-alive connections (client port unknown)."""
    started_s = time.monotonic()
    try:
        reply = client.post(f"/models/{model}/predict", json={"inputs": [[1.0]]})
    except httpx.HTTPError:
        return Outcome(0, model, None, started_s=started_s)
    outputs = reply.json().get("outputs") if reply.status_code == 200 else None
    return Outcome(0, model, reply.status_code, outputs, started_s)


class Traffic:
    """Threads that send requests until the block ends: one connection each, or with
    ``keep_alive`` one httpx client per thread that reuses its connections."""

    def __init__(
        self,
        port: int,
        models: dict[str, int],
        pause_s: float = 0.01,
        *,
        keep_alive: bool = False,
    ) -> None:
        self.port = port
        # A pause between requests leaves the CPUs to the workers that start meanwhile.
        self.pause_s = pause_s
        self.keep_alive = keep_alive
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(model,), daemon=True)
            for model, threads in models.items()
            for _ in range(threads)
        ]

    def _run(self, model: str) -> None:
        if not self.keep_alive:
            while not self._stop.wait(self.pause_s):
                self._add(predict(self.port, model))
            return
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=20) as client:
            while not self._stop.wait(self.pause_s):
                self._add(predict_kept_alive(client, model))

    def _add(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def taken(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def served(self) -> int:
        return sum(o.status == 200 for o in self.taken())

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


# -- the processes, from /proc ---------------------------------------------------------------


def client_ports(pid: int, server_port: int) -> set[int]:
    """The client ports of the connections to ``server_port`` that ``pid`` holds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            listening = state == "0A"
            if inode in inodes and not listening and int(local.split(":")[1], 16) == server_port:
                ports.add(int(remote.split(":")[1], 16))
    return ports


def supervisor_pid(gateway: GatewayProcess) -> int:
    assert gateway.process is not None
    return gateway.process.pid


def two_workers(gateway: GatewayProcess) -> set[int]:
    found: set[int] = set()

    def two() -> bool:
        found.clear()
        found.update(workers_of(supervisor_pid(gateway)))
        return len(found) == 2

    eventually(two, timeout_s=30)
    return found


def events_after(gateway: GatewayProcess, after_id: int) -> list[dict[str, Any]]:
    with gateway.client() as client:
        reply = client.get("/api/v1/events", params={"after_id": after_id, "limit": 1000})
    assert reply.status_code == 200, reply.text
    return [e for e in reply.json()["events"] if e["model"] == "*"]


def last_event_id(gateway: GatewayProcess) -> int:
    with gateway.client() as client:
        events = client.get("/api/v1/events", params={"latest": True, "limit": 1}).json()
    return max((int(e["id"]) for e in events["events"]), default=0)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("workers")
    process = GatewayProcess(directory, workers_config("sqlite:///state.db")).start()
    try:
        yield process
    finally:
        stop_and_check(process, f"sqlite:///{directory / 'state.db'}")


@pytest.mark.parametrize(
    ("keep_alive", "clients", "pause_s"),
    [
        pytest.param(False, 2, 0.01, id="a-connection-per-request"),
        # A stopping worker that closed its idle keep-alive connections at once would
        # reset the requests these clients had just sent on them: a race, which one roll
        # at this rate loses often but not always (test_http11_stop.py loses it surely).
        pytest.param(True, 4, 0.001, id="keep-alive"),
    ],
)
def test_sighup_replaces_every_worker_under_traffic_without_a_failed_request(
    gateway: GatewayProcess, keep_alive: bool, clients: int, pause_s: float
) -> None:
    before = two_workers(gateway)
    after_id = last_event_id(gateway)
    config = yaml.safe_load(gateway.config_path.read_text())
    label = config["models"]["m"]["versions"]["a"]["label"] + 7
    config["models"]["m"]["versions"]["a"]["label"] = label
    gateway.config_path.write_text(yaml.safe_dump(config))
    with Traffic(gateway.port, {"m": clients}, pause_s, keep_alive=keep_alive) as traffic:
        eventually(lambda: traffic.served() >= 20)
        hangup_s = time.monotonic()
        os.kill(supervisor_pid(gateway), signal.SIGHUP)

        def restarted() -> bool:
            return any(e["kind"] == "workers.restarted" for e in events_after(gateway, after_id))

        eventually(restarted, timeout_s=60)
        done_s = time.monotonic()
        served_before = traffic.served()
        eventually(lambda: traffic.served() >= served_before + 10)
    outcomes = traffic.taken()
    failed = [o for o in outcomes if o.status != 200]
    assert failed == [], f"{len(failed)} of {len(outcomes)} requests failed: {failed[:5]}"
    during = [o for o in outcomes if hangup_s <= o.started_s <= done_s]
    assert len(during) >= 10, "the traffic did not go on while the workers were replaced"
    # Every answer after the restart comes from a worker that read the new config.
    assert {str(o.outputs) for o in outcomes if o.started_s > done_s} == {f"[{label}]"}
    after = two_workers(gateway)
    assert not after & before, f"old workers still run: {after & before}"


def test_a_killed_worker_is_restarted_and_only_its_requests_in_flight_fail(
    gateway: GatewayProcess,
) -> None:
    workers = two_workers(gateway)
    after_id = last_event_id(gateway)
    with Traffic(gateway.port, {"slow": 4, "m": 1}) as traffic:
        eventually(lambda: traffic.served() >= 10)
        # Every slow request is in flight on one worker or the other (or queued).
        eventually(lambda: sum(len(client_ports(p, gateway.port)) for p in workers) >= 3)
        victim = max(workers, key=lambda pid: len(client_ports(pid, gateway.port)))
        # Stopped first, so that what it holds cannot change between reading and killing.
        os.kill(victim, signal.SIGSTOP)
        held = client_ports(victim, gateway.port)
        os.kill(victim, signal.SIGKILL)
        survivor = (workers - {victim}).pop()

        def replaced() -> bool:
            now = workers_of(supervisor_pid(gateway))
            return len(now) == 2 and victim not in now and survivor in now

        eventually(replaced, timeout_s=30)
        restarted = (workers_of(supervisor_pid(gateway)) - {survivor}).pop()
        # The restarted worker takes its share: it holds connections of its own.
        eventually(lambda: bool(client_ports(restarted, gateway.port)), timeout_s=30)
        served_before = traffic.served()
        eventually(lambda: traffic.served() >= served_before + 10)
    outcomes = traffic.taken()
    failed = {o.client_port for o in outcomes if o.status != 200}
    slow_held = {o.client_port for o in outcomes if o.model == "slow" and o.client_port in held}
    assert slow_held, f"the killed worker held no slow request ({len(held)} connections)"
    # Only requests on its connections failed, and every slow one of them did.
    assert failed <= held, f"requests it never held failed: {sorted(failed - held)}"
    assert slow_held <= failed
    assert 0 < len(failed) <= len(held)
    died = [e for e in events_after(gateway, after_id) if e["kind"] == "worker.died"]
    assert [e["data"]["pid"] for e in died] == [victim]
    assert "killed by SIGKILL" in died[0]["message"]


def test_two_workers_on_sqlite_add_up_their_metrics_and_one_controller_acts(
    gateway: GatewayProcess,
) -> None:
    counts_and_leads(gateway, f"sqlite:///{gateway.directory / 'state.db'}")


@pytest.mark.postgres
def test_two_workers_on_postgresql_add_up_their_metrics_and_one_controller_acts(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    gateway = GatewayProcess(tmp_path, workers_config(fresh_postgres_url)).start()
    try:
        counts_and_leads(gateway, fresh_postgres_url)
    finally:
        stop_and_check(gateway, fresh_postgres_url)


def counts_and_leads(gateway: GatewayProcess, store_url: str) -> None:
    """Both workers' requests add up in the model's status, and one controller moves
    a rollout on while the other never takes the lease."""
    replicas = live_replicas(gateway)
    store = open_store(store_url)
    try:
        # Until both workers have answered some: which one accepts is up to them.
        sent = 0
        by_replica: dict[str, int] = {}

        def both_served() -> bool:
            nonlocal sent
            with Traffic(gateway.port, {"counted": 4}) as traffic:
                time.sleep(0.2)
            assert all(o.status == 200 for o in traffic.taken())
            sent += len(traffic.taken())
            time.sleep(0.3)
            by_replica.clear()
            for bucket in store.read_metric_buckets("counted", 0):
                requests = int(bucket.payload.get("requests", 0))
                by_replica[bucket.replica] = by_replica.get(bucket.replica, 0) + requests
            return len(by_replica) == 2

        eventually(both_served, timeout_s=30)
        assert set(by_replica) == replicas
        assert sum(by_replica.values()) == sent

        def status_counts_all() -> bool:
            with gateway.client() as client:
                versions = client.get("/api/v1/models/counted").json()["versions"]
            return bool((versions[0]["served"] or {}).get("requests") == sent)

        eventually(status_counts_all)

        lease = store.get_lease(LEASE_NAME)
        assert lease is not None and lease.holder in replicas
        rollout = {
            "model": "r",
            "candidate": "b",
            "strategy": "steps",
            "steps": [{"set_weight": 50}, {"set_weight": 100}],
        }
        with gateway.client() as client:
            applied = client.post("/api/v1/rollouts", json=rollout)
            assert applied.status_code == 201, applied.text

            def promoted() -> bool:
                return bool(
                    client.get("/api/v1/rollouts/r").json()["status"]["phase"] == "promoted"
                )

            eventually(promoted, timeout_s=30)
            events = client.get("/api/v1/events", params={"model": "r"}).json()["events"]
        kinds = [e["kind"] for e in events]
        assert kinds.count("rollout.promoted") == 1, kinds
        # One leader all along: the lease never changed hands, so no other worker's
        # controller ever acted.
        after = store.get_lease(LEASE_NAME)
        assert after is not None and (after.holder, after.epoch) == (lease.holder, lease.epoch)
    finally:
        store.close()


def live_replicas(gateway: GatewayProcess) -> set[str]:
    """The replica ids of the two workers, once both heartbeat."""
    workers = two_workers(gateway)
    live: list[dict[str, Any]] = []

    def both_live() -> bool:
        with gateway.client() as client:
            replicas = client.get("/api/v1/replicas").json()["replicas"]
        live[:] = [r for r in replicas if r["live"]]
        return {r["pid"] for r in live} == workers

    eventually(both_live)
    return {str(r["id"]) for r in live}


def stop_and_check(gateway: GatewayProcess, store_url: str) -> None:
    """SIGINT to the supervisor reaches every worker: each stops cleanly, leaving the fleet."""
    replicas = live_replicas(gateway)
    gateway.stop()
    assert gateway.process is not None and gateway.process.returncode == 0, gateway.log()
    assert workers_of(supervisor_pid(gateway)) == set()
    store = open_store(store_url)
    try:
        stopped = {r.id: r.stopped for r in store.list_replicas() if r.id in replicas}
    finally:
        store.close()
    assert stopped == dict.fromkeys(replicas, True)
