"""Clear refusals instead of 502: a request the version refuses as bad input is the
caller's error, answered 4xx with the version's own message and counted apart.

A BYTES tensor sent to a numeric in-process model, and an upstream's
own 400 for a bad request, were answered 502 and counted as the version's failures.
Here a started gateway (real ASGI app, temporary SQLite store) serves the iris example
models in-process and two ``http`` versions whose upstreams are real OIP servers on
loopback, all on one event loop of the module's own; ``/metrics`` shows what was
counted where.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backends"))

from oip_servers import Model, OipTestServer

from rollwise.config import parse_config
from rollwise.server.app import RollwiseApp, create_app

T = TypeVar("T")
HEADERS = {"content-type": "application/json", "host": "127.0.0.1"}
ROW = {"name": "features", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
TEXT_ROW = {"name": "features", "shape": [1, 4], "datatype": "BYTES", "data": ["a", "b", "c", "d"]}


class Served:
    """The gateway behind its ASGI app, two OIP upstreams, and a client, on one loop."""

    def __init__(self, tmp: Path, iris_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.upstream_a = OipTestServer(model=Model())
        self.upstream_b = OipTestServer(model=Model())
        self.run(self.upstream_a.__aenter__())
        self.run(self.upstream_b.__aenter__())
        config = {
            "store": "sqlite:///state.db",
            "models": {
                "iris": {
                    "stable": "v1",
                    "versions": {
                        "v1": {"backend": "sklearn", "path": str(iris_dir / "iris-v1.skops")},
                        "v2": {"backend": "onnx", "path": str(iris_dir / "iris-v2.onnx")},
                    },
                },
                "remote": {
                    "stable": "a",
                    "versions": {
                        name: {"backend": "http", "url": server.url, "model": "iris"}
                        for name, server in (("a", self.upstream_a), ("b", self.upstream_b))
                    },
                },
            },
        }
        self.app: RollwiseApp = create_app(
            parse_config(config, base_dir=tmp), insecure_dev=True, host="127.0.0.1"
        )
        self.run(self.app.gateway.start())
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")

    def run(self, awaitable: Awaitable[T]) -> T:
        async def main() -> T:
            return await awaitable

        return self.loop.run_until_complete(main())

    def infer(self, path: str, row: dict[str, Any]) -> httpx.Response:
        body = orjson.dumps({"inputs": [row]})
        return self.run(self.client.post(path, content=body, headers=HEADERS))

    def put_routing(self, weights: dict[str, int], mirrors: dict[str, int]) -> None:
        body = orjson.dumps({"weights": weights, "mirrors": mirrors})
        response = self.run(
            self.client.put("/api/v1/models/remote/routing", content=body, headers=HEADERS)
        )
        assert response.status_code == 200, response.text

    def counts(self) -> dict[tuple[str, str, str, str], float]:
        """Every per-version counter of ``/metrics``: (name, model, version, role) → value."""
        response = self.run(self.client.get("/metrics", headers=HEADERS))
        assert response.status_code == 200, response.text
        found: dict[tuple[str, str, str, str], float] = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name.endswith("_total") and "role" in labels:
                    key = (sample.name, labels["model"], labels["version"], labels["role"])
                    found[key] = sample.value
        return found

    def settle(self, done: Callable[[], bool]) -> None:
        """Let the loop run (bounded) until ``done()``: mirrors answer in the background."""
        for _ in range(200):
            if done():
                return
            self.run(asyncio.sleep(0.01))

    def close(self) -> None:
        self.run(self.client.aclose())
        self.run(self.app.gateway.stop())
        self.run(self.upstream_a.__aexit__(None, None, None))
        self.run(self.upstream_b.__aexit__(None, None, None))
        self.loop.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, iris_dir: Path) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("refusals"), iris_dir)
    try:
        yield server
    finally:
        server.close()


def delta(
    before: dict[tuple[str, str, str, str], float],
    after: dict[tuple[str, str, str, str], float],
    model: str,
    version: str,
    role: str,
) -> dict[str, float]:
    """How much each counter of one (model, version, role) grew; every one must exist."""
    names = ("requests", "errors", "client_errors")
    keys = {name: (f"rollwise_{name}_total", model, version, role) for name in names}
    return {name: after[key] - before.get(key, 0.0) for name, key in keys.items()}


def test_an_upstreams_400_reaches_the_caller_as_a_4xx_with_its_message(served: Served) -> None:
    message = "input 'features': expected shape [-1, 4], got [1, 3]"
    served.upstream_a.model.fail_status = 400
    served.upstream_a.model.fail_body = orjson.dumps({"error": message})
    before = served.counts()
    try:
        response = served.infer("/v2/models/remote/infer", ROW)
    finally:
        served.upstream_a.model.fail_status = None
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["x-rollwise-version"] == "a"
    reply = response.json()
    assert message in reply["error"]
    assert reply["version"] == "a"
    assert served.upstream_a.url not in reply["error"]
    counted = delta(before, served.counts(), "remote", "a", "served")
    assert counted == {"requests": 1, "errors": 0, "client_errors": 1}


def test_an_upstreams_500_is_still_the_versions_failure(served: Served) -> None:
    served.upstream_a.model.fail_status = 500
    served.upstream_a.model.fail_body = b'{"error": "model exploded"}'
    before = served.counts()
    try:
        response = served.infer("/v2/models/remote/infer", ROW)
    finally:
        served.upstream_a.model.fail_status = None
    assert response.status_code == 502, response.text
    counted = delta(before, served.counts(), "remote", "a", "served")
    assert counted == {"requests": 1, "errors": 1, "client_errors": 0}


def test_a_shadows_refusal_is_its_client_error_and_a_refused_request_is_still_mirrored(
    served: Served,
) -> None:
    served.put_routing({"a": 100}, {"b": 100})
    served.upstream_b.model.fail_status = 400
    served.upstream_b.model.fail_body = b'{"error": "unknown output \'sum2\'"}'
    try:
        before = served.counts()
        assert served.infer("/v2/models/remote/infer", ROW).status_code == 200
        served.upstream_a.model.fail_status = 400
        assert served.infer("/v2/models/remote/infer", ROW).status_code // 100 == 4
        # The shadow's counters appear once its first answer is recorded.
        key = ("rollwise_requests_total", "remote", "b", "shadow")
        served.settle(lambda: served.counts().get(key, 0.0) - before.get(key, 0.0) >= 2)
        after = served.counts()
    finally:
        served.upstream_a.model.fail_status = None
        served.upstream_b.model.fail_status = None
        served.put_routing({"a": 100}, {})
    assert delta(before, after, "remote", "b", "shadow") == {
        "requests": 2,
        "errors": 0,
        "client_errors": 2,
    }
    assert delta(before, after, "remote", "a", "served") == {
        "requests": 2,
        "errors": 0,
        "client_errors": 1,
    }


@pytest.mark.parametrize(
    ("path", "version", "role"),
    [
        pytest.param("/v2/models/iris/infer", "v1", "served", id="sklearn stable, served"),
        pytest.param(
            "/v2/models/iris/versions/v2/infer", "v2", "preview", id="onnx forced, as a preview"
        ),
    ],
)
def test_a_bytes_tensor_to_a_numeric_model_is_a_422_not_a_502(
    served: Served, path: str, version: str, role: str
) -> None:
    before = served.counts()
    response = served.infer(path, TEXT_ROW)
    assert response.status_code == 422, response.text
    assert response.headers["x-rollwise-version"] == version
    assert "could not convert string to float: 'a'" in response.json()["error"]
    counted = delta(before, served.counts(), "iris", version, role)
    assert counted == {"requests": 1, "errors": 0, "client_errors": 1}
