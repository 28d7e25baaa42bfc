"""Fixtures: real iris models on disk and configs for gateway processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollwise.example_models import write_example


@pytest.fixture(scope="session")
def iris_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("iris-models")
    write_example(directory)
    return directory


def gateway_config(models_dir: Path, **server: Any) -> dict[str, Any]:
    """A gateway with real sklearn (skops) and ONNX iris models plus fake versions."""
    return {
        "store": "sqlite:///state.db",
        "server": {"flush_interval_s": 0.2, "routing_poll_interval_s": 0.2, **server},
        "models": {
            "iris": {
                "sticky_key": "header:X-User-Id",
                "stable": "v1",
                "versions": {
                    "v1": {"backend": "sklearn", "path": str(models_dir / "iris-v1.skops")},
                    "v2": {"backend": "onnx", "path": str(models_dir / "iris-v2.onnx")},
                    "slow": {"backend": "fake", "label": 1, "latency_ms": 2000},
                    "broken": {"backend": "fake", "label": 1, "error_rate": 1.0},
                    "missing": {"backend": "fake", "fail_load": "weights file is corrupt"},
                },
            },
            "echo": {
                "sticky_key": "header:X-User-Id",
                "stable": "a",
                "versions": {
                    "a": {"backend": "fake", "label": 0},
                    "b": {"backend": "fake", "label": 1},
                    "c": {"backend": "fake", "label": 2},
                },
            },
        },
    }
