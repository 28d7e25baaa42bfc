"""Fixtures: real iris models on disk and configs for gateway processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollwise.example_models import write_example


@pytest.fixture(scope="session")
def iris_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("iris-models")
    write_example(directory)
    return directory
