"""/metrics of a real gateway: the garbage collector's pauses of this process, which
replica answered, and, in a worker of ``serve --workers 2``, every series labelled with
that worker's replica id (the workers share one port, so one scrape target).

The in-process cases build the app as ``rollwise serve`` does (a lone gateway, or a
worker: the gateway with ``on_hangup``) and read /metrics over ASGI; the last case runs
the supervisor and its two workers as processes.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from rollwise.config import parse_config
from rollwise.server.app import RollwiseApp, create_app
from rollwise.server.gc_policy import GC_PAUSES, time_pauses
from support.gateway import GatewayProcess, eventually, workers_of

MODELS = {"m": {"stable": "a", "versions": {"a": {"backend": "fake", "label": 0}}}}


def parsed(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(found: list[Sample], name: str, **labels: str) -> float:
    matching = [
        s.value
        for s in found
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matching) == 1, (name, labels, matching)
    return matching[0]


@pytest.fixture
def timed_gc() -> Iterator[None]:
    """GC pauses timed in this process, as a started server times its own; the callback
    is taken away again if this fixture put it there."""
    added = GC_PAUSES.callback not in gc.callbacks
    time_pauses()
    try:
        yield
    finally:
        if added:
            gc.callbacks.remove(GC_PAUSES.callback)


def scrape_in_process(
    tmp_path: Path, on_hangup: Callable[[], None] | None, between: Callable[[], Any]
) -> tuple[RollwiseApp, list[Sample], list[Sample]]:
    """Two scrapes of a started gateway's /metrics, one request served before them and
    ``between()`` called between them."""
    config = parse_config(
        {"store": "sqlite:///state.db", "controller": {"enabled": False}, "models": MODELS},
        base_dir=tmp_path,
        environ={},
    )
    app = create_app(config, insecure_dev=True, host="127.0.0.1", on_hangup=on_hangup)

    async def run() -> tuple[list[Sample], list[Sample]]:
        await app.gateway.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as api:
                answer = await api.post("/models/m/predict", json={"inputs": [[1.0]]})
                assert answer.status_code == 200, answer.text
                first = await api.get("/metrics")
                between()
                second = await api.get("/metrics")
            assert first.status_code == second.status_code == 200
            return parsed(first.text), parsed(second.text)
        finally:
            await app.gateway.stop()

    first, second = asyncio.run(run())
    return app, first, second


@pytest.mark.usefixtures("timed_gc")
def test_a_lone_gateway_shows_its_gc_passes_and_itself_and_labels_no_series(
    tmp_path: Path,
) -> None:
    app, before, after = scrape_in_process(tmp_path, None, gc.collect)
    # The full pass between the scrapes was counted, and timed.
    passes = value(after, "rollwise_gc_passes_total", generation="2")
    assert passes >= value(before, "rollwise_gc_passes_total", generation="2") + 1
    assert value(after, "rollwise_gc_pause_seconds_total", generation="2") > 0
    longest = value(after, "rollwise_gc_longest_pause_seconds", generation="2")
    assert 0 < longest <= value(after, "rollwise_gc_pause_seconds_total", generation="2")
    info = [s for s in after if s.name == "rollwise_replica_info"]
    assert [s.labels for s in info] == [{"replica": app.gateway.replica, "pid": str(os.getpid())}]
    assert value(after, "rollwise_requests_total", model="m", version="a", role="served") == 1
    labelled = {s.name for s in after if "replica" in s.labels} - {"rollwise_replica_info"}
    assert labelled == set()


def test_a_worker_labels_every_series_with_its_replica_id(tmp_path: Path) -> None:
    app, _, found = scrape_in_process(tmp_path, lambda: None, lambda: None)
    replica = app.gateway.replica
    assert {s.labels.get("replica") for s in found} == {replica}
    served = value(found, "rollwise_requests_total", model="m", version="a", role="served")
    assert served == 1
    # The process series carry the label too (``value`` asserts exactly one is there).
    value(found, "rollwise_gc_passes_total", generation="0", replica=replica)


def test_each_worker_of_serve_workers_2_answers_metrics_for_itself_labelled(
    tmp_path: Path,
) -> None:
    config = {
        "store": "sqlite:///state.db",
        "server": {"workers": 2, "heartbeat_interval_s": 0.2},
        "controller": {"enabled": False},
        "models": MODELS,
    }
    gateway = GatewayProcess(tmp_path, config).start()
    try:
        assert gateway.process is not None
        supervisor = gateway.process.pid
        eventually(lambda: len(workers_of(supervisor)) == 2, timeout_s=30)
        workers = workers_of(supervisor)

        def fleet() -> set[str]:
            with gateway.client() as client:
                listed = client.get("/api/v1/replicas").json()["replicas"]
            return {r["id"] for r in listed if r["live"] and not r["stopped"]}

        eventually(lambda: len(fleet()) == 2, timeout_s=30)
        replicas = fleet()
        # Each scrape opens a new connection, which either worker may accept.
        for _ in range(4):
            found = parsed(httpx.get(f"{gateway.url}/metrics", timeout=10).text)
            (info,) = [s for s in found if s.name == "rollwise_replica_info"]
            assert int(info.labels["pid"]) in workers
            assert info.labels["replica"] in replicas
            assert {s.labels.get("replica") for s in found} == {info.labels["replica"]}
            assert {"rollwise_gc_passes_total", "rollwise_routing_weight"} <= {
                s.name for s in found
            }
    finally:
        gateway.stop()
