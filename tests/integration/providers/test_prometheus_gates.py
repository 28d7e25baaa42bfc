"""Prometheus gates against a real Prometheus scraping a real gateway's ``/metrics``.

One gateway process (fake models, short intervals) and one ``prometheus`` process
scraping it every second. A canary gated on the candidate's error rate as Prometheus
computes it from ``rollwise_errors_total`` / ``rollwise_requests_total`` rolls back when
the candidate fails and is promoted when it does not; a gate that Prometheus cannot
answer with one number never passes; a gate with no server to ask is refused by the
dry run.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rollwise.client import Client, ClientError
from support.gateway import OPERATOR, GatewayProcess, eventually, running
from support.prometheus import require_prometheus, running_prometheus
from support.rollouts import CONTROLLER, SERVER, wait_until, wait_until_ended

MODELS = ("promgood", "prombad", "promshape")

ERROR_RATE = (
    '(sum(rate(rollwise_errors_total{model="{{model}}",version="{{version}}",role="served"}'
    "[{{window}}])) or vector(0))"
    ' / sum(rate(rollwise_requests_total{model="{{model}}",version="{{version}}",'
    'role="served"}[{{window}}]))'
)


def _config() -> dict[str, Any]:
    def model(candidate: dict[str, Any]) -> dict[str, Any]:
        return {
            "sticky_key": "header:X-User-Id",
            "stable": "a",
            "versions": {"a": {"backend": "fake", "label": 0}, "b": candidate},
        }

    return {
        "store": "sqlite:///state.db",
        "server": dict(SERVER),
        "controller": dict(CONTROLLER),
        "models": {
            "promgood": model({"backend": "fake", "label": 0}),
            "prombad": model({"backend": "fake", "label": 0, "error_rate": 1.0}),
            "promshape": model({"backend": "fake", "label": 0}),
        },
    }


class _Users:
    """Requests to every model from many users, in a background thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = random.Random(0)
        with httpx.Client(base_url=self.url, timeout=5) as http:
            while not self.stop.is_set():
                for model in MODELS:
                    headers = {"X-User-Id": f"user-{rng.randrange(1000)}"}
                    with contextlib.suppress(httpx.HTTPError):
                        http.post(
                            f"/models/{model}/predict", json={"inputs": [[1.0]]}, headers=headers
                        )
                self.stop.wait(0.02)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, str]]:
    require_prometheus()
    directory = tmp_path_factory.mktemp("prometheus-gates")
    with running(directory, _config()) as gateway:
        targets = [f"127.0.0.1:{gateway.port}"]
        with running_prometheus(directory, targets) as prometheus:
            users = _Users(gateway.url)
            users.thread.start()
            try:
                yield gateway, prometheus.url
            finally:
                users.stop.set()
                users.thread.join(timeout=10)


def _canary(model: str, gate: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": model,
        "candidate": "b",
        "strategy": "canary",
        "canary": {"weights": [50], "pause_s": 3},
        "gates": [gate],
        "rollback": {"failure_limit": 2, "on_inconclusive_after_s": 40},
    }


def test_a_breached_prometheus_query_rolls_the_canary_back(
    stack: tuple[GatewayProcess, str],
) -> None:
    gateway, prometheus = stack
    gate = {"metric": "prometheus", "query": ERROR_RATE, "max": 0.1, "address": prometheus}
    with Client(gateway.url, OPERATOR) as client:
        client.apply(_canary("prombad", gate))
        ended = wait_until_ended(client, "prombad", timeout_s=60)
        events = client.events("prombad", limit=1000)
    status = ended["status"]
    assert status["phase"] == "rolled_back", status
    # The candidate fails every request: Prometheus computes its error rate as 1.
    assert "gate failed: prometheus" in status["message"], status
    assert "(candidate 1)" in status["message"], status
    failed = [e for e in events if e["kind"] == "rollout.gate_failed"]
    # failure_limit 2: one breached reading is noted, the second in a row rolls back.
    assert failed and "failing judgement 1 of 2" in failed[0]["message"]


def test_a_prometheus_query_within_its_bound_lets_the_canary_through(
    stack: tuple[GatewayProcess, str],
) -> None:
    gateway, prometheus = stack
    gate = {
        "metric": "prometheus",
        "query": ERROR_RATE,
        "max_increase": 0.05,  # relative: the query runs once for b, once for a
        "min_samples": 20,
        "address": prometheus,
    }
    with Client(gateway.url, OPERATOR) as client:
        client.apply(_canary("promgood", gate))
        ended = wait_until_ended(client, "promgood", timeout_s=60)
    assert ended["status"]["phase"] == "promoted", ended["status"]


def test_a_query_of_many_series_stays_inconclusive_and_says_what_came_back(
    stack: tuple[GatewayProcess, str],
) -> None:
    gateway, prometheus = stack
    # Not aggregated: the stable version of every model, one series each.
    query = 'rollwise_requests_total{version="a",role="served"}'
    gate = {"metric": "prometheus", "query": query, "max": 1e12, "address": prometheus}

    def several_series() -> bool:
        answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=5)
        return len(answer.json()["data"]["result"]) >= 2

    # Until Prometheus has them all, one series would be a number within the bound.
    eventually(several_series, timeout_s=15)
    spec = {**_canary("promshape", gate), "canary": {"weights": [50], "pause_s": 0}}
    with Client(gateway.url, OPERATOR) as client:
        client.apply(spec)
        rollout = wait_until(
            client,
            "promshape",
            lambda r: "a vector of" in str(r["status"].get("judgement")),
            "an inconclusive judgement naming the vector",
            timeout_s=30,
        )
        assert rollout["status"]["phase"] == "progressing", rollout["status"]
        client.abort("promshape", "test done")


def test_a_prometheus_gate_without_a_server_is_refused_by_the_dry_run(
    stack: tuple[GatewayProcess, str],
) -> None:
    gateway, _ = stack
    gate = {"metric": "prometheus", "query": "vector(0)", "max": 1}
    with (
        Client(gateway.url, OPERATOR) as client,
        pytest.raises(ClientError, match="no Prometheus server to ask"),
    ):
        client.apply(_canary("promshape", gate), dry_run=True)


def test_the_test_prometheus_scrapes_the_gateway(stack: tuple[GatewayProcess, str]) -> None:
    _, prometheus = stack

    def scraped() -> bool:
        answer = httpx.get(
            f"{prometheus}/api/v1/query",
            params={"query": 'rollwise_requests_total{model="promgood"}'},
            timeout=5,
        ).json()
        return bool(answer["data"]["result"])

    eventually(scraped, timeout_s=15)
