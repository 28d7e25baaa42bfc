"""Fixtures: real iris models on disk and configs for gateway processes."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollwise.example_models import write_example


@pytest.fixture(scope="session")
def iris_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("iris-models")
    write_example(directory)
    return directory


@pytest.fixture
def sigterm_fallback() -> Iterator[list[int]]:
    """SIGTERM that reaches no handler of the server lands here (not in pytest's default,
    which would end the whole run)."""
    missed: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda number, frame: missed.append(number))
    try:
        yield missed
    finally:
        signal.signal(signal.SIGTERM, previous)
