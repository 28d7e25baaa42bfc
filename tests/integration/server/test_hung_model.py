"""A model that hangs: its callers time out, the other versions serve, the gateway stops."""

from __future__ import annotations

from pathlib import Path

import httpx

from support.gateway import GatewayProcess

TESTS = Path(__file__).resolve().parents[2]
ROW = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}


def test_a_hung_model_times_out_without_taking_the_gateway_down(
    iris_dir: Path, tmp_path: Path
) -> None:
    config = {
        "store": "sqlite:///state.db",
        "server": {"predict_threads": 2},
        "models": {
            "iris": {
                "stable": "v1",
                "versions": {
                    "v1": {"backend": "sklearn", "path": str(iris_dir / "iris-v1.skops")},
                    "hung": {
                        "backend": "python",
                        "target": "support.hanging_models:hang",
                        "python_path": str(TESTS),
                        "timeout_s": 0.5,
                    },
                },
            }
        },
    }
    gateway = GatewayProcess(tmp_path, config).start()
    try:
        with gateway.client() as ops:
            routed = ops.put("/api/v1/models/iris/routing", json={"weights": {"hung": 100}})
            assert routed.status_code == 200, routed.text
            for _ in range(3):
                stuck = httpx.post(f"{gateway.url}/models/iris/predict", json=ROW, timeout=30)
                assert stuck.status_code == 504, stuck.text
                assert stuck.json()["version"] == "hung"
            back = ops.put("/api/v1/models/iris/routing", json={"weights": {"v1": 100}})
            assert back.status_code == 200, back.text
        # Of the two model threads, the hung version may hold only one.
        served = httpx.post(f"{gateway.url}/models/iris/predict", json=ROW, timeout=30)
        assert served.status_code == 200, served.text
        assert served.headers["x-rollwise-version"] == "v1"
    finally:
        gateway.stop()
    assert gateway.process is not None
    # Stopped by SIGINT, not killed after the grace period: the hung thread did not hold
    # the process.
    assert gateway.process.returncode == 0, gateway.log()
