"""The endpoint comparators (judge, embedding) against a real OpenAI-compatible server
process on loopback: what they count, how they stay bounded, and that a dead endpoint
costs the caller nothing and is counted."""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from rollwise.analysis.comparators import parse_comparator
from rollwise.analysis.text_compare import win_rate_interval
from rollwise.domain import Role
from rollwise.metrics.recorder import MetricsRecorder, VersionWindow
from rollwise.runtime.text_comparer import TextComparer
from support.gateway import free_port
from support.openai_comparators import comparator_server, stats

KEY = "sk-judge-test-1"


def synchronously(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test in its own event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


class Harness:
    """A comparer whose background jobs the test can wait for."""

    def __init__(self, config: dict[str, Any], seed: int = 7) -> None:
        spec = parse_comparator(config, environ={"JUDGE_KEY": KEY})
        self.metrics = MetricsRecorder()
        self.tasks: set[asyncio.Task[None]] = set()
        self.comparer = TextComparer(
            {"chat": spec},
            self.metrics,
            self._later,
            draw=random.Random(seed).random,
            environ={"JUDGE_KEY": KEY},
        )

    def _later(self, job: Coroutine[Any, Any, None]) -> None:
        self.tasks.add(asyncio.get_running_loop().create_task(job))

    async def settle(self) -> VersionWindow:
        while self.tasks:
            done = [t for t in self.tasks if t.done()]
            self.tasks.difference_update(done)
            await asyncio.sleep(0.01)
        await self.comparer.close()
        return self.metrics.window("chat", "v2", Role.SHADOW)


def judge_config(url: str, **more: Any) -> dict[str, Any]:
    return {
        "kind": "judge",
        "url": url,
        "model": "judge-1",
        "api_key_env": "JUDGE_KEY",
        "timeout_s": 5,
        **more,
    }


# (stable answer, candidate answer): the fake judge prefers the longer one.
PAIRS = [
    ("short", "a longer answer"),  # candidate wins
    ("a long stable answer", "brief"),  # stable wins
    ("same", "size"),  # tie
    ("x", "xyz"),  # candidate wins
    ("abc", "abcdef"),  # candidate wins
    ("stable is longest here", "cand"),  # stable wins
]


@synchronously
async def test_judge_win_rate_matches_the_judges_known_answers() -> None:
    with comparator_server() as url:
        harness = Harness(judge_config(url, concurrency=2))
        for _ in range(5):
            for stable, candidate in PAIRS:
                assert harness.comparer.compare_texts(
                    "chat", "v2", stable, candidate, request_text="say something"
                )
        window = await harness.settle()
        seen = stats(url)
    # 3 wins and 2 losses per round of 6 pairs, 1 tie excluded.
    assert (window.wins, window.judged, window.ties) == (15, 25, 5)
    assert window.compare_dropped == 0
    assert window.summary()["win_rate"] == pytest.approx(0.6)
    interval = win_rate_interval(window.wins, window.judged)
    assert interval.low < 0.6 < interval.high
    # Every call carried the configured key, as a bearer token.
    assert seen["requests"] == 30
    assert set(seen["authorization"]) == {f"Bearer {KEY}"}


@synchronously
async def test_the_judges_position_is_drawn_so_both_orders_occur() -> None:
    # The fake judge always prefers the longer answer wherever it stands: a win rate of
    # exactly 1 proves each verdict was mapped back through the order drawn.
    draws: list[float] = []
    rng = random.Random(3)

    def draw() -> float:
        draws.append(rng.random())
        return draws[-1]

    with comparator_server() as url:
        harness = Harness(judge_config(url))
        harness.comparer._draw = draw
        for i in range(20):
            harness.comparer.compare_texts("chat", "v2", "s", "candidate answer " + "x" * i)
        window = await harness.settle()
    assert (window.wins, window.judged) == (20, 20)
    assert any(d < 0.5 for d in draws) and any(d >= 0.5 for d in draws)


@synchronously
async def test_embedding_agreement_counts_pairs_above_the_threshold() -> None:
    with comparator_server() as url:
        config = {"kind": "embedding", "url": url, "model": "embed-1", "threshold": 0.95}
        harness = Harness(config)
        for stable, candidate in [
            ("The cat sat.", "the cat sat"),
            ("hello world", "hello world"),
            ("aaaa", "zzzz"),
        ]:
            harness.comparer.compare_texts("chat", "v2", stable, candidate)
        window = await harness.settle()
    assert (window.agreed, window.compared) == (2, 3)


@synchronously
async def test_a_dead_judge_delays_nothing_and_every_pair_is_counted_as_dropped() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    harness = Harness(judge_config(url, timeout_s=2))
    for _ in range(10):
        # Returns at once: the call happens later, in the background.
        assert harness.comparer.compare_texts("chat", "v2", "a", "b")
    assert harness.comparer.held("chat") == 10
    window = await harness.settle()
    assert window.compare_dropped == 10
    assert (window.judged, window.ties) == (0, 0)


@synchronously
async def test_a_broken_judge_answering_500_is_counted_as_dropped() -> None:
    with comparator_server(status=500) as url:
        harness = Harness(judge_config(url))
        for _ in range(4):
            harness.comparer.compare_texts("chat", "v2", "a", "bb")
        window = await harness.settle()
    assert (window.compare_dropped, window.judged) == (4, 0)


@synchronously
async def test_pairs_beyond_the_queue_are_dropped_and_counted() -> None:
    with comparator_server(latency_ms=200) as url:
        harness = Harness(judge_config(url, concurrency=1, queue=3))
        accepted = [harness.comparer.compare_texts("chat", "v2", "a", "bb") for _ in range(10)]
        window = await harness.settle()
    # One call starts at once, taking its pair off the queue only when the task runs;
    # until then the queue of 3 fills and the other 7 are refused.
    assert accepted.count(True) == 3
    assert window.compare_dropped == 7
    assert window.judged == 3
