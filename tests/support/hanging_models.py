"""Model callables for tests: one that hangs until released, one that answers at once."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

RELEASE = threading.Event()


def hang(rows: Any) -> list[int]:
    """Blocks its thread until ``RELEASE`` is set (or 30 s pass), like a stuck model."""
    RELEASE.wait(30)
    return [0] * len(rows)


def answer(rows: Any) -> list[int]:
    return [1] * len(rows)


async def hang_async(rows: Any) -> list[int]:
    """An ``async def`` model that never answers."""
    await asyncio.Event().wait()
    return [0] * len(rows)
