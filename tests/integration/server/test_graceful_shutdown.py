"""A gateway stopped by SIGTERM answers what it has begun, flushes, and hands the
controller's lease over at once.

The model under test holds every request until the test lets it go (files, since the
gateway is another process), so "while requests are in flight" is a fact the test
arranges, not a race it hopes to win.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from rollwise.config import parse_config
from rollwise.controller import LEASE_NAME, Controller
from rollwise.domain import Role, VersionHealth
from rollwise.metrics.recorder import windows_by_version
from rollwise.server.app import RollwiseApp, create_app
from rollwise.server.dataplane import Receive, Scope, Send
from rollwise.server.http11 import HTTPServer, serve
from rollwise.store import open_store
from rollwise.store.base import Store
from support.gated_models import arrived, release
from support.gateway import eventually, free_port

TESTS = Path(__file__).resolve().parents[2]
IN_FLIGHT = 3
# A guard against a hung test, not a measurement.
GUARD_S = 10.0
ROW = {"inputs": [[1.0, 2.0]]}


def gated_config(gate: Path) -> dict[str, Any]:
    return {
        "store": "sqlite:///state.db",
        # No flush but the one at stop: the figures in the store after it are its own.
        "server": {"flush_interval_s": 60},
        # A lease that would outlive the test: another controller gets it only if the
        # stopping one gives it up.
        "controller": {"interval_s": 0.2, "lease_ttl_s": 3600},
        "models": {
            "m": {
                "stable": "held",
                "versions": {
                    "held": {
                        "backend": "python",
                        "target": "support.gated_models:Gated",
                        "factory": True,
                        "kwargs": {"folder": str(gate)},
                        "python_path": str(TESTS),
                        "timeout_s": 60,
                    }
                },
            }
        },
    }


@contextlib.contextmanager
def gateway(directory: Path, http: str) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """``rollwise serve`` on the held model, logging at info; killed if still running."""
    gate = directory / "gate"
    gate.mkdir()
    config = directory / "rollwise.yaml"
    config.write_text(yaml.safe_dump(gated_config(gate)))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = directory / "gateway.log"
    args = [
        sys.executable, "-m", "rollwise.cli", "serve", "--config", str(config),
        "--port", str(port), "--insecure-dev", "--log-level", "info", "--http", http,
    ]  # fmt: skip
    with log.open("ab") as sink:
        process = subprocess.Popen(args, cwd=directory, stdout=sink, stderr=subprocess.STDOUT)
    try:

        def ready() -> bool:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
            return False

        eventually(ready, timeout_s=60)
        yield process, url, gate
    finally:
        # A test that failed midway must not leave its requests held.
        release(gate)
        if process.poll() is None:
            process.kill()
            process.wait()


def hold_requests(url: str, gate: Path, pool: ThreadPoolExecutor) -> list[Future[httpx.Response]]:
    """``IN_FLIGHT`` predictions, each on its own connection, all held by the model."""
    predict = f"{url}/models/m/predict"
    calls = [pool.submit(httpx.post, predict, json=ROW, timeout=60) for _ in range(IN_FLIGHT)]
    eventually(lambda: arrived(gate) == IN_FLIGHT)
    return calls


def refuses_connections(url: str) -> bool:
    try:
        httpx.get(f"{url}/v2/health/live", timeout=1)
    except httpx.ConnectError:
        return True
    except httpx.TransportError:
        # Accepted just before the listener closed, then closed unanswered: try again.
        return False
    return False


def lease_held_by_someone(store: Store) -> bool:
    return store.get_lease(LEASE_NAME) is not None


def assert_flushed(store: Store, responses: list[httpx.Response]) -> None:
    """The stop's flush wrote the held requests' metrics and their logged predictions."""
    buckets = store.read_metric_buckets("m", 0)
    windows = windows_by_version((b.version, b.role, b.payload) for b in buckets)
    assert windows[("held", Role.SERVED)].requests == IN_FLIGHT
    for response in responses:
        assert store.get_predictions(response.headers["x-request-id"])
    (replica,) = store.list_replicas()
    assert replica.stopped


def assert_logged_in_order(log: str, steps: list[str]) -> None:
    at = [log.find(step) for step in steps]
    assert -1 not in at and at == sorted(at), f"steps {steps} not logged in order:\n{log}"


def test_sigterm_answers_the_requests_in_flight_and_hands_the_lease_over_at_once(
    tmp_path: Path,
) -> None:
    # The pool is left last, once the gateway no longer holds its calls.
    with (
        ThreadPoolExecutor(IN_FLIGHT) as pool,
        gateway(tmp_path, "rollwise") as (process, url, gate),
        contextlib.closing(open_store(f"sqlite:///{tmp_path / 'state.db'}")) as store,
    ):
        eventually(lambda: lease_held_by_someone(store))
        calls = hold_requests(url, gate, pool)

        process.send_signal(signal.SIGTERM)
        # Still answering its requests, the gateway takes no new connection and has
        # given its lease up: the next controller leads from its first tick.
        eventually(lambda: refuses_connections(url))
        eventually(lambda: not lease_held_by_someone(store))
        successor = Controller(store, holder="successor", interval_s=0.2, lease_ttl_s=3600)
        successor.tick()
        assert successor.leader
        assert process.poll() is None
        assert not any(call.done() for call in calls)

        release(gate)
        responses = [call.result() for call in calls]
        assert [r.status_code for r in responses] == [200] * IN_FLIGHT
        assert {r.headers["connection"] for r in responses} == {"close"}
        assert process.wait(timeout=30) == 0
        assert_flushed(store, responses)
    assert_logged_in_order(
        (tmp_path / "gateway.log").read_text(),
        [
            "readiness answers 503",
            f"waiting up to 30 s for the requests in flight on {IN_FLIGHT} connection(s)",
            "released its lease",
            "every request in flight was answered",
            "metrics and the prediction log flushed",
            "left the fleet",
            "gateway stopped",
        ],
    )


def test_under_uvicorn_sigterm_hands_the_lease_over_and_answers_the_requests_in_flight(
    tmp_path: Path,
) -> None:
    # uvicorn itself tells the app only after its drain (lifespan shutdown); rollwise
    # tells it at the signal, so the lease goes while the requests in flight are held.
    log = tmp_path / "gateway.log"
    with (
        ThreadPoolExecutor(IN_FLIGHT) as pool,
        gateway(tmp_path, "uvicorn") as (process, url, gate),
        contextlib.closing(open_store(f"sqlite:///{tmp_path / 'state.db'}")) as store,
    ):
        eventually(lambda: lease_held_by_someone(store))
        calls = hold_requests(url, gate, pool)
        process.send_signal(signal.SIGTERM)
        eventually(lambda: refuses_connections(url))
        eventually(lambda: "Waiting for connections to close" in log.read_text())
        eventually(lambda: not lease_held_by_someone(store))
        assert process.poll() is None
        assert not any(call.done() for call in calls)
        release(gate)
        responses = [call.result() for call in calls]
        assert [r.status_code for r in responses] == [200] * IN_FLIGHT
        # uvicorn ends by raising the signal again once it has shut down.
        assert process.wait(timeout=30) in {0, -signal.SIGTERM}
        assert not lease_held_by_someone(store)
        assert_flushed(store, responses)
    assert_logged_in_order(
        log.read_text(),
        [
            "readiness answers 503",
            "released its lease",
            "metrics and the prediction log flushed",
            "left the fleet",
            "gateway stopped",
        ],
    )


def test_readiness_fails_the_moment_a_stop_begins_while_a_request_in_flight_is_answered(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    config = parse_config(gated_config(gate), base_dir=tmp_path, environ={})
    app = create_app(config, insecure_dev=True, host="127.0.0.1")

    async def main() -> None:
        server = HTTPServer(app, "127.0.0.1", 0)
        await server.start()
        stopping = asyncio.create_task(server.serve_until_stopped())
        base = f"http://127.0.0.1:{server.port}"
        try:
            async with (
                httpx.AsyncClient(base_url=base, timeout=30) as client,
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://gateway"
                ) as inside,
            ):
                assert (await client.get("/v2/health/ready")).status_code == 200
                held = asyncio.create_task(client.post("/models/m/predict", json=ROW))
                while arrived(gate) < 1:  # noqa: ASYNC110 (the model says so in a file)
                    await asyncio.sleep(0.01)
                server.request_stop()
                await asyncio.sleep(0)
                # Asked of the app itself: the server takes no new connection any more.
                ready = await inside.get("/v2/health/ready")
                assert ready.status_code == 503
                assert ready.json() == {"ready": False, "reason": "stopping"}
                assert not held.done()
                release(gate)
                assert (await held).status_code == 200
        finally:
            release(gate)
            server.request_stop()
            await asyncio.wait_for(stopping, 30)

    asyncio.run(main())


# -- a signal while the gateway starts ------------------------------------------------------


class SignalledOnceLeading:
    """The gateway's app, sending this process SIGTERM once its startup is done and its
    controller holds the lease, but before the server hears of it (so before it listens)."""

    def __init__(self, app: RollwiseApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def signal_first(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                controller = self.app.gateway.controller
                # The controller's thread says so in an attribute, not an event.
                while controller is not None and not controller.leader:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                os.kill(os.getpid(), signal.SIGTERM)
            await send(message)

        await self.app(scope, receive, signal_first)

    def begin_shutdown(self) -> None:
        self.app.begin_shutdown()


async def signal_while_loading(app: RollwiseApp) -> None:
    states = app.gateway.states
    while not any(s.health is VersionHealth.LOADING for s in states.values()):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("moment", ["while a model loads", "once the controller leads"])
def test_a_sigterm_while_the_gateway_starts_undoes_the_start_and_frees_the_lease(
    tmp_path: Path, moment: str, sigterm_fallback: list[int]
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    settings = gated_config(gate)
    if moment == "while a model loads":
        boot = {"backend": "fake", "label": 0, "load_latency_ms": 60_000}
        settings["models"]["boot"] = {"stable": "b", "versions": {"b": boot}}
    app = create_app(
        parse_config(settings, base_dir=tmp_path, environ={}), insecure_dev=True, host="127.0.0.1"
    )

    async def main() -> None:
        if moment == "while a model loads":
            watcher = asyncio.create_task(signal_while_loading(app))
            await asyncio.wait_for(serve(app, "127.0.0.1", free_port()), GUARD_S)
            await watcher
        else:
            await asyncio.wait_for(
                serve(SignalledOnceLeading(app), "127.0.0.1", free_port()), GUARD_S
            )

    asyncio.run(main())
    assert sigterm_fallback == [], "the signal came before the server's handlers"
    with contextlib.closing(open_store(f"sqlite:///{tmp_path / 'state.db'}")) as store:
        assert not lease_held_by_someone(store)
        (replica,) = store.list_replicas()
        assert replica.stopped, "the replica did not leave the fleet"
