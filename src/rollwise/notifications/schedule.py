"""Pure: the bounded queue notifications wait in, and the backoff between attempts.

A full queue drops its oldest notification: when a receiver has been down long enough
to fill it, the newest events (a rollback after the steps before it) are the ones that
still matter. Every drop is counted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

BACKOFF_CAP_S = 60.0
"""The longest wait between two attempts of one delivery."""


def backoff_s(attempt: int, base_s: float, cap_s: float = BACKOFF_CAP_S) -> float:
    """Seconds to wait before retry ``attempt`` (1 for the first retry): ``base_s``
    doubled for each retry before it, at most ``cap_s``."""
    if attempt < 1:
        return 0.0
    # min() on the exponent first: 2 ** 10_000 would still be exact but pointless.
    return min(cap_s, base_s * 2.0 ** min(attempt - 1, 32))


def schedule_s(retries: int, base_s: float, cap_s: float = BACKOFF_CAP_S) -> list[float]:
    """The waits before each retry of a delivery tried ``1 + retries`` times."""
    return [backoff_s(attempt, base_s, cap_s) for attempt in range(1, retries + 1)]


class BoundedQueue(Generic[T]):
    """A FIFO of at most ``size`` items; adding to a full one drops the oldest. Not
    thread-safe: the sender holds its lock around it."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"queue size must be at least 1, not {size}")
        self.size = size
        self._items: deque[T] = deque()
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Add ``item``; False when an older item was dropped to make room."""
        dropped = len(self._items) >= self.size
        if dropped:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        return not dropped

    def take(self) -> T | None:
        return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)
