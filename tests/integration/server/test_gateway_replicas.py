"""Several gateway replicas sharing one PostgreSQL database, and gateways chained over OIP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from support.gateway import OPERATOR, GatewayProcess, eventually, free_port


def fake_config(store: str) -> dict[str, Any]:
    return {
        "store": store,
        "server": {"flush_interval_s": 0.2, "routing_poll_interval_s": 0.2},
        "models": {
            "m": {
                "stable": "a",
                "sticky_key": "header:X-User-Id",
                "versions": {
                    "a": {"backend": "fake", "label": 0},
                    "b": {"backend": "fake", "label": 1},
                },
            }
        },
    }


def weights(gateway: GatewayProcess) -> dict[str, int]:
    with gateway.client() as client:
        status = client.get("/api/v1/models/m").json()
    return {v["name"]: v["weight"] for v in status["versions"]}


def test_replicas_on_postgresql_share_routing_and_metrics(
    postgres_url: str, tmp_path: Path
) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = GatewayProcess(tmp_path / "one", fake_config(postgres_url))
    two = GatewayProcess(tmp_path / "two", fake_config(postgres_url))
    one.start()
    two.start()
    try:
        with one.client() as client:
            response = client.put("/api/v1/models/m/routing", json={"weights": {"a": 0, "b": 100}})
            assert response.status_code == 200, response.text
        eventually(lambda: weights(two) == {"a": 0, "b": 100})
        served = httpx.post(f"{two.url}/models/m/predict", json={"inputs": [[1.0]]})
        assert served.headers["x-rollwise-version"] == "b"
        for gateway in (one, two):
            for _ in range(5):
                httpx.post(f"{gateway.url}/models/m/predict", json={"inputs": [[1.0]]})

        def counted_everywhere() -> bool:
            with one.client() as client:
                versions = client.get("/api/v1/models/m").json()["versions"]
            b = next(v for v in versions if v["name"] == "b")
            return b["served"] is not None and b["served"]["requests"] == 11

        eventually(counted_everywhere)
    finally:
        one.stop()
        two.stop()


def test_an_http_version_passes_oip_through_to_another_gateway(
    iris_dir: Path, tmp_path: Path
) -> None:
    upstream_config = {
        "store": "sqlite:///upstream.db",
        "models": {
            "iris": {
                "stable": "v1",
                "versions": {"v1": {"backend": "sklearn", "path": str(iris_dir / "iris-v1.skops")}},
            },
            "sleepy": {"stable": "s", "versions": {"s": {"backend": "fake", "latency_ms": 3000}}},
        },
    }
    (tmp_path / "up").mkdir()
    (tmp_path / "front").mkdir()
    upstream = GatewayProcess(tmp_path / "up", upstream_config).start()
    try:
        front_config = {
            "store": "sqlite:///front.db",
            "models": {
                "iris": {
                    "stable": "remote",
                    "versions": {
                        "remote": {
                            "backend": "http",
                            "url": upstream.url,
                            "model": "iris",
                            "timeout_s": 5,
                        },
                        "sleepy": {
                            "backend": "http",
                            "url": upstream.url,
                            "model": "sleepy",
                            "timeout_s": 0.5,
                        },
                    },
                }
            },
        }
        front = GatewayProcess(tmp_path / "front", front_config).start()
        try:
            body = {
                "inputs": [
                    {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
                ]
            }
            response = httpx.post(f"{front.url}/v2/models/iris/infer", json=body)
            assert response.status_code == 200, response.text
            assert response.headers["x-rollwise-version"] == "remote"
            label = next(o for o in response.json()["outputs"] if o["name"] == "label")
            assert label["data"] == [0]
            plain = httpx.post(
                f"{front.url}/models/iris/predict", json={"inputs": [[6.7, 3.0, 5.2, 2.3]]}
            )
            assert plain.json()["outputs"] == [2]

            forced = httpx.post(
                f"{front.url}/v2/models/iris/versions/sleepy/infer",
                json=body,
                headers={"authorization": f"Bearer {OPERATOR}"},
            )
            assert forced.status_code == 504, forced.text
            assert forced.json()["version"] == "sleepy"
            assert "did not answer in time" in forced.json()["error"]
        finally:
            front.stop()
    finally:
        upstream.stop()


def test_an_unreachable_upstream_fails_only_its_version(tmp_path: Path) -> None:
    missing = "unreachable"
    config = {
        "store": "sqlite:///state.db",
        "models": {
            "m": {
                "stable": "a",
                "versions": {
                    "a": {"backend": "fake", "label": 0},
                    missing: {"backend": "http", "url": f"http://127.0.0.1:{free_port()}"},
                },
            }
        },
    }
    gateway = GatewayProcess(tmp_path, config).start()
    try:
        with gateway.client() as client:
            versions = {v["name"]: v for v in client.get("/api/v1/models/m").json()["versions"]}
        assert versions[missing]["health"] == "failed"
        assert versions[missing]["reason"]
        assert (
            httpx.post(f"{gateway.url}/models/m/predict", json={"inputs": [[1.0]]}).status_code
            == 200
        )
    finally:
        gateway.stop()
