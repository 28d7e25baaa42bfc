"""The controller in real processes: ``kill -9`` mid-rollout, two leaders-to-be on one
PostgreSQL store, and ``rollwise controller`` on its own.

What the README promises: killed at any point, the controller leaves either a whole
step change or none of it, and the next leader goes on from the stored status, so a
rollout enters every step exactly once, in order, and its status never goes back. Any
number of gateways may run a controller; only the lease holder acts.

The test process watches the store on its own connection while the gateways work, so
it sees every status the rollout passes through (at a 50 ms poll).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from psycopg import sql
from sqlalchemy import make_url

from rollwise.controller import LEASE_NAME
from rollwise.demo.traffic import TrafficGenerator, TrafficStats
from rollwise.domain import Event, Routing
from rollwise.example_models import write_example
from rollwise.rollout import Phase
from rollwise.store import Lease, Store, open_store
from support.gateway import FEEDBACK, GatewayProcess, eventually

MODEL = "iris"
STEP = "rollout.step"
PAUSE_S = 1.5
MIDDLE_STEP = 5  # the pause at 30 % of CANARY
LEASE_TTL_S = 3.0
ROLLOUT_TIMEOUT_S = 90.0


def canary(weights: list[int]) -> dict[str, Any]:
    return {
        "model": MODEL,
        "candidate": "v2",
        "strategy": "canary",
        "canary": {"weights": weights, "pause_s": PAUSE_S},
        "description": "no gates: the controller only moves it on",
    }


CANARY = canary([10, 20, 30, 40, 50, 60])
SHORT_CANARY = canary([25, 50, 75])

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


# -- configs and stores -------------------------------------------------------------------


@pytest.fixture(scope="module")
def example_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The models section of the example config, with paths made absolute."""
    folder = tmp_path_factory.mktemp("example")
    config = yaml.safe_load(write_example(folder).read_text())
    models: dict[str, Any] = config["models"]
    for version in models[MODEL]["versions"].values():
        if "path" in version:
            version["path"] = str(folder / version["path"])
    return models


def gateway_config(
    models: Mapping[str, Any], store: str, *, controller: bool = True
) -> dict[str, Any]:
    return {
        "store": store,
        "server": {"flush_interval_s": 0.5, "routing_poll_interval_s": 0.5},
        "controller": {
            "enabled": controller,
            "interval_s": 0.5,
            "settle_s": 1.0,
            "lease_ttl_s": LEASE_TTL_S,
        },
        "models": dict(models),
    }


@dataclass(frozen=True)
class StoreTarget:
    """Where the gateways keep their state (``config``) and how this process opens it
    (``url``): a SQLite file beside the config, or a PostgreSQL schema of its own."""

    config: str
    url: str


def new_postgres_schema(request: pytest.FixtureRequest) -> str:
    database_url: str = request.getfixturevalue("postgres_url")
    conninfo = make_url(database_url).render_as_string(hide_password=False)
    schema = f"p_{secrets.token_hex(6)}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))

    def drop() -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    request.addfinalizer(drop)
    url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> StoreTarget:
    if request.param == "sqlite":
        return StoreTarget("sqlite:///state.db", f"sqlite:///{tmp_path / 'state.db'}")
    url = new_postgres_schema(request)
    return StoreTarget(url, url)


def holder_of(process: subprocess.Popen[bytes] | None) -> str:
    """The process part of the lease holder name a rollwise process on this host uses."""
    assert process is not None
    return f"{socket.gethostname()}-{process.pid}"


def process_of(lease: Lease) -> str:
    """The holder name without its random per-process suffix."""
    return lease.holder.rsplit("-", 1)[0]


def kill_9(gateway: GatewayProcess) -> None:
    assert gateway.process is not None
    gateway.process.send_signal(signal.SIGKILL)
    gateway.process.wait(timeout=10)


def restart(gateway: GatewayProcess) -> GatewayProcess:
    """A new gateway process on the same config, store and port as ``gateway``."""
    config = yaml.safe_load(gateway.config_path.read_text())
    again = GatewayProcess(gateway.directory, config)
    again.port, again.url = gateway.port, gateway.url
    again.log_path = gateway.log_path
    return again.start()


def apply(gateway: GatewayProcess, spec: Mapping[str, Any]) -> int:
    with gateway.client() as client:
        response = client.post("/api/v1/rollouts", json=dict(spec))
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def served_weights(gateway: GatewayProcess) -> dict[str, int]:
    with gateway.client() as client:
        response = client.get(f"/api/v1/models/{MODEL}")
    assert response.status_code == 200, response.text
    return {v["name"]: v["weight"] for v in response.json()["versions"] if v["weight"]}


# -- watching the store from this process -------------------------------------------------


@dataclass(frozen=True)
class Seen:
    revision: int
    phase: str
    step_index: int
    weight: int
    lease: Lease | None


class StoreWatcher:
    """Polls the rollout of one model (and the lease) on its own connection."""

    def __init__(self, url: str, rollout_id: int) -> None:
        self.store: Store = open_store(url)
        self.rollout_id = rollout_id
        self.seen: list[Seen] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-watcher", daemon=True)

    def __enter__(self) -> StoreWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.store.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                row = self.store.get_rollout(self.rollout_id)
                lease = self.store.get_lease(LEASE_NAME)
            except Exception as error:  # a store busy with a dying writer; try again
                self.errors.append(repr(error))
            else:
                if row is not None:
                    status = row.status
                    seen = Seen(
                        row.revision,
                        row.phase,
                        int(status["step_index"]),
                        int(status["weight"]),
                        lease,
                    )
                    if not self.seen or self.seen[-1] != seen:
                        self.seen.append(seen)
            self._stop.wait(0.05)

    @property
    def last(self) -> Seen | None:
        return self.seen[-1] if self.seen else None

    def wait_for(self, what: str, check: Any, timeout_s: float = ROLLOUT_TIMEOUT_S) -> Seen:
        def holds() -> bool:
            last = self.last
            return last is not None and bool(check(last))

        holds.__name__ = what
        eventually(holds, timeout_s)
        last = self.last
        assert last is not None
        return last


def rollout_events(store: Store, rollout_id: int) -> list[Event]:
    """The events of the model's only rollout. Those written when it started carry no
    rollout id (it is not known before the insert); the controller's carry it."""
    events = [e for e in store.list_events(MODEL, limit=10_000) if e.kind.startswith("rollout.")]
    assert {e.data.get("rollout") for e in events} <= {None, rollout_id}
    return events


def started_events(store: Store) -> list[Event]:
    return [e for e in store.list_events(MODEL, limit=10_000) if e.kind == "rollout.started"]


def assert_every_step_once_in_order(
    store: Store, rollout_id: int, watcher: StoreWatcher, spec: Mapping[str, Any] = CANARY
) -> None:
    weights = list(spec["canary"]["weights"])
    steps = 2 * len(weights) + 1  # (set_weight, pause) per weight, then set_weight 100
    events = rollout_events(store, rollout_id)
    indices = [int(e.data["step"]) - 1 for e in events if e.kind == STEP]
    assert indices == list(range(steps)), [(e.kind, e.data.get("step"), e.actor) for e in events]
    entered = [int(e.data["weight"]) for e in events if e.kind == STEP]
    assert sorted(set(entered)) == [*weights, 100]
    assert [e.kind for e in events].count("rollout.promoted") == 1
    assert len(started_events(store)) == 1
    # Seen from outside, the status only ever moved forward.
    revisions = [s.revision for s in watcher.seen]
    assert revisions == sorted(revisions), revisions
    seen_steps = [s.step_index for s in watcher.seen]
    assert seen_steps == sorted(seen_steps), seen_steps
    assert watcher.seen[-1].phase == Phase.PROMOTED


def assert_promoted_routing(store: Store, *gateways: GatewayProcess) -> None:
    assert store.get_routing(MODEL) == Routing(MODEL, "v2", {"v2": 100}, {}, MODEL)
    for gateway in gateways:
        eventually(lambda g=gateway: served_weights(g) == {"v2": 100})  # type: ignore[misc]


# -- traffic from a thread ----------------------------------------------------------------


class BackgroundTraffic:
    """~100 requests/s of the iris users, in a thread with its own event loop."""

    def __init__(self, url: str, rate_per_s: float = 100.0, **options: Any) -> None:
        options.setdefault("feedback_token", FEEDBACK)
        self.generator = TrafficGenerator(
            url, MODEL, rate_per_s=rate_per_s, rng=random.Random(11), **options
        )
        self.stats: TrafficStats | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def _run(self) -> None:
        async def main() -> TrafficStats:
            async with self.generator as generator:
                return await generator.run()

        try:
            self.stats = asyncio.run(main())
        except BaseException as error:
            self.error = error

    def __enter__(self) -> BackgroundTraffic:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> TrafficStats:
        self.generator.stop()
        self._thread.join(timeout=30)
        if self.error is not None:
            raise self.error
        assert self.stats is not None, "the traffic thread did not end"
        return self.stats


@contextlib.contextmanager
def gateways(*processes: GatewayProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            process.stop()


# -- kill -9 ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_rollout_survives_kill_9_of_its_gateway_and_goes_on_from_the_same_step(
    tmp_path: Path, target: StoreTarget, example_models: dict[str, Any]
) -> None:
    first = GatewayProcess(tmp_path, gateway_config(example_models, target.config)).start()
    second: GatewayProcess | None = None
    try:
        with BackgroundTraffic(first.url) as traffic:
            rollout_id = apply(first, CANARY)
            with StoreWatcher(target.url, rollout_id) as watcher:
                watcher.wait_for(
                    "the rollout reached a middle step", lambda s: s.step_index >= MIDDLE_STEP
                )
                kill_9(first)
                killed_at = watcher.store.get_rollout(rollout_id)
                assert killed_at is not None and killed_at.phase == Phase.PROGRESSING
                old_lease = watcher.store.get_lease(LEASE_NAME)
                assert old_lease is not None and process_of(old_lease) == holder_of(first.process)
                last_step = 2 * len(CANARY["canary"]["weights"])
                assert int(killed_at.status["step_index"]) < last_step  # not over yet

                second = restart(first)
                watcher.wait_for("the rollout was promoted", lambda s: s.phase == Phase.PROMOTED)
                store = watcher.store

                assert_every_step_once_in_order(store, rollout_id, watcher)
                # The new leader took over from the stored status: its first step event
                # is the one after the last step the killed gateway wrote.
                lease = store.get_lease(LEASE_NAME)
                assert lease is not None
                assert (process_of(lease), lease.epoch) == (
                    holder_of(second.process),
                    old_lease.epoch + 1,
                )
                after_kill = [
                    int(e.data["step"]) - 1
                    for e in rollout_events(store, rollout_id)
                    if e.kind == STEP and e.at_s > old_lease.expires_at_s
                ]
                assert after_kill[0] == int(killed_at.status["step_index"]) + 1
                assert_promoted_routing(store, second)
            stats = traffic.stop()
        assert stats.by_version.get("v2", 0) > 0
    finally:
        first.stop()
        if second is not None:
            second.stop()


@pytest.mark.slow
@pytest.mark.postgres
def test_two_gateways_on_postgresql_have_one_leader_and_the_other_takes_over_after_kill_9(
    tmp_path: Path, request: pytest.FixtureRequest, example_models: dict[str, Any]
) -> None:
    url = new_postgres_schema(request)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = GatewayProcess(tmp_path / "one", gateway_config(example_models, url))
    two = GatewayProcess(tmp_path / "two", gateway_config(example_models, url))
    with gateways(one, two), contextlib.closing(open_store(url)) as store:
        one.start()
        eventually(lambda: store.get_lease(LEASE_NAME) is not None)
        leader = store.get_lease(LEASE_NAME)
        assert leader is not None and process_of(leader) == holder_of(one.process)
        two.start()

        with BackgroundTraffic(two.url) as traffic:
            rollout_id = apply(two, CANARY)
            with StoreWatcher(url, rollout_id) as watcher:
                watcher.wait_for(
                    "the rollout reached a middle step", lambda s: s.step_index >= MIDDLE_STEP
                )
                # While both ran, one of them held the lease, the same one throughout.
                leases = {s.lease for s in watcher.seen}
                assert {(x.holder, x.epoch) for x in leases if x} == {(leader.holder, leader.epoch)}
                kill_9(one)
                old_lease = store.get_lease(LEASE_NAME)
                assert old_lease is not None and old_lease.holder == leader.holder

                watcher.wait_for("the rollout was promoted", lambda s: s.phase == Phase.PROMOTED)
                assert_every_step_once_in_order(store, rollout_id, watcher)
                lease = store.get_lease(LEASE_NAME)
                assert lease is not None
                assert (process_of(lease), lease.epoch) == (
                    holder_of(two.process),
                    leader.epoch + 1,
                )
                # two waited for the lease to expire: all it wrote is dated after that.
                by_two = [
                    e for e in rollout_events(store, rollout_id) if e.at_s > old_lease.expires_at_s
                ]
                assert by_two and by_two[-1].kind == "rollout.promoted"
                assert_promoted_routing(store, two)
            stats = traffic.stop()
        # two served every request: the other gateway's death cost it none.
        assert stats.failed == 0, (stats.failures_by_status, list(stats.last_errors))


# -- rollwise controller on its own --------------------------------------------------------


@pytest.mark.slow
def test_rollwise_controller_alone_moves_a_rollout_to_its_end(
    tmp_path: Path, example_models: dict[str, Any]
) -> None:
    config = gateway_config(example_models, "sqlite:///state.db", controller=False)
    gateway = GatewayProcess(tmp_path, config).start()
    log_path = tmp_path / "controller.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        with contextlib.closing(open_store(f"sqlite:///{tmp_path / 'state.db'}")) as store:
            rollout_id = apply(gateway, SHORT_CANARY)
            # The gateway runs no controller: nobody took the lease.
            assert store.get_lease(LEASE_NAME) is None
            args = [sys.executable, "-m", "rollwise.cli", "controller"]
            args += ["--config", str(gateway.config_path), "--log-level", "info"]
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    args,
                    cwd=tmp_path,
                    stdout=log,
                    stderr=log,
                    env=dict(os.environ),
                )
            with StoreWatcher(f"sqlite:///{tmp_path / 'state.db'}", rollout_id) as watcher:
                watcher.wait_for("the rollout was promoted", lambda s: s.phase == Phase.PROMOTED)
                assert_every_step_once_in_order(store, rollout_id, watcher, SHORT_CANARY)
                lease = store.get_lease(LEASE_NAME)
                assert lease is not None and process_of(lease) == holder_of(process)
                assert {s.lease.holder for s in watcher.seen if s.lease} == {lease.holder}
            # The gateway picks the controller's routing up from the store.
            assert_promoted_routing(store, gateway)
            response = httpx.post(
                f"{gateway.url}/models/{MODEL}/predict",
                json={"inputs": [[5.1, 3.5, 1.4, 0.2]]},
                headers={"x-user-id": "u1"},
            )
            assert response.headers["x-rollwise-version"] == "v2"

            # Stopped, it gives the lease up at once for the next controller.
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0, log_path.read_text()
            assert store.get_lease(LEASE_NAME) is None
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        gateway.stop()
