"""A model for tests whose answers wait until the test lets them go, in any process.

Built by the ``python`` backend (``factory: true``, ``kwargs: {folder: ...}``). Each
call leaves a file ``arrived-*`` in the folder, so that a test knows its requests are
in flight, and answers once the test creates ``release`` there. Files, not events:
the gateway under test is often another process.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

RELEASE = "release"


class Gated:
    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    async def predict(self, rows: Any) -> list[int]:
        # async: a held request holds no model thread.
        (self.folder / f"arrived-{uuid.uuid4().hex}").touch()
        # Polled: the test that creates the file is often another process.
        while not (self.folder / RELEASE).exists():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return [1] * len(rows)


def arrived(folder: Path) -> int:
    """How many calls have reached the model so far."""
    return len(list(folder.glob("arrived-*")))


def release(folder: Path) -> None:
    (folder / RELEASE).touch()
