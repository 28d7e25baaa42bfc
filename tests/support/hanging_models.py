"""Model callables for tests: one that hangs until released, one that answers at once."""

from __future__ import annotations

import threading
from typing import Any

RELEASE = threading.Event()


def hang(rows: Any) -> list[int]:
    """Blocks its thread until ``RELEASE`` is set (or 30 s pass), like a stuck model."""
    RELEASE.wait(30)
    return [0] * len(rows)


def answer(rows: Any) -> list[int]:
    return [1] * len(rows)
