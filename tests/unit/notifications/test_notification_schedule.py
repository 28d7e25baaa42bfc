"""The bounded queue notifications wait in, and the backoff between attempts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollwise.notifications.schedule import BACKOFF_CAP_S, BoundedQueue, backoff_s, schedule_s


@pytest.mark.parametrize(
    ("retries", "base_s", "expected"),
    [
        (0, 1.0, []),
        (1, 1.0, [1.0]),
        (3, 1.0, [1.0, 2.0, 4.0]),
        (4, 0.5, [0.5, 1.0, 2.0, 4.0]),
        (10, 1.0, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0]),
    ],
    ids=["no retries", "one retry waits the base", "each retry doubles", "from half a second",
         "capped at a minute"],
)  # fmt: skip
def test_the_backoff_schedule(retries: int, base_s: float, expected: list[float]) -> None:
    assert schedule_s(retries, base_s) == expected


@given(st.integers(min_value=1, max_value=10_000), st.floats(min_value=0.01, max_value=60))
def test_a_wait_is_never_longer_than_the_cap_nor_shorter_than_the_base(
    attempt: int, base_s: float
) -> None:
    assert min(base_s, BACKOFF_CAP_S) <= backoff_s(attempt, base_s) <= BACKOFF_CAP_S


def test_the_first_attempt_does_not_wait() -> None:
    assert backoff_s(0, 5.0) == 0.0


@given(st.integers(min_value=1, max_value=50), st.lists(st.integers(), max_size=200))
def test_the_queue_keeps_the_newest_within_its_bound_and_counts_the_rest(
    size: int, items: list[int]
) -> None:
    queue: BoundedQueue[int] = BoundedQueue(size)
    kept = [queue.put(item) for item in items]
    assert len(queue) == min(size, len(items))
    assert list(queue) == items[len(items) - len(queue) :]
    assert queue.dropped == max(0, len(items) - size) == kept.count(False)


def test_the_queue_hands_items_out_oldest_first() -> None:
    queue: BoundedQueue[str] = BoundedQueue(3)
    for item in "abcd":
        queue.put(item)
    assert [queue.take(), queue.take(), queue.take(), queue.take()] == ["b", "c", "d", None]


def test_a_queue_holds_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BoundedQueue(0)
