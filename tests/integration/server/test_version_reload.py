"""Reloading a version: a fixed file comes back into service without a restart."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from support.gateway import VIEWER, GatewayProcess

ROW = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}


def test_a_version_whose_file_appears_later_is_reloaded_and_serves(
    iris_dir: Path, tmp_path: Path
) -> None:
    late = tmp_path / "late.skops"
    config = {
        "store": "sqlite:///state.db",
        "models": {
            "iris": {
                "stable": "v1",
                "versions": {
                    "v1": {"backend": "sklearn", "path": str(iris_dir / "iris-v1.skops")},
                    "v2": {"backend": "sklearn", "path": str(late)},
                },
            }
        },
    }
    gateway = GatewayProcess(tmp_path, config).start()
    try:
        with gateway.client() as ops:
            versions = {v["name"]: v for v in ops.get("/api/v1/models/iris").json()["versions"]}
            assert versions["v2"]["health"] == "failed"

            refused = ops.post("/api/v1/models/iris/versions/v2/reload")
            assert refused.status_code == 502
            assert refused.json()["version"] == "v2"
            assert "failed to load" in refused.json()["error"]

            shutil.copy(iris_dir / "iris-v1.skops", late)
            reloaded = ops.post("/api/v1/models/iris/versions/v2/reload")
            assert reloaded.status_code == 200, reloaded.text
            assert reloaded.json()["health"] == "ready"
            routed = ops.put("/api/v1/models/iris/routing", json={"weights": {"v2": 100}})
            assert routed.status_code == 200, routed.text
            answer = httpx.post(f"{gateway.url}/models/iris/predict", json=ROW)
            assert answer.headers["x-rollwise-version"] == "v2"

            # A broken file does not take a serving version down.
            late.write_bytes(b"not a model")
            broken = ops.post("/api/v1/models/iris/versions/v2/reload")
            assert broken.status_code == 502
            still = httpx.post(f"{gateway.url}/models/iris/predict", json=ROW)
            assert still.status_code == 200
            assert still.headers["x-rollwise-version"] == "v2"

            kinds = [e["kind"] for e in ops.get("/api/v1/events").json()["events"]]
            assert kinds.count("version.reload_failed") == 2
            assert "version.reloaded" in kinds

            unknown = ops.post("/api/v1/models/iris/versions/v9/reload")
            assert unknown.status_code == 404
        viewer = httpx.post(
            f"{gateway.url}/api/v1/models/iris/versions/v2/reload",
            headers={"authorization": f"Bearer {VIEWER}"},
        )
        assert viewer.status_code == 403
    finally:
        gateway.stop()
