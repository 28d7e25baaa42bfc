"""The synthetic traffic generator against a real gateway: rate, split, feedback, failures.

Counts are checked loosely (the machine may be slow); what is checked exactly is the
bookkeeping: every request sent ends as ok or failed, under the version and status the
gateway gave, and every answered request gets its feedback.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollwise.client import Client
from rollwise.demo.traffic import TRANSPORT_ERROR, TrafficGenerator, TrafficStats, run_traffic
from rollwise.example_models import CONFIG_NAME
from support.gateway import FEEDBACK, OPERATOR, GatewayProcess, eventually, running


@pytest.fixture(scope="module")
def gateway(iris_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    # v3 exactly as the example writes it: the faulty version the demo rolls back.
    example = yaml.safe_load((iris_dir / CONFIG_NAME).read_text())
    config = {
        "store": "sqlite:///state.db",
        "server": {"flush_interval_s": 0.2, "routing_poll_interval_s": 0.2},
        "models": {
            "iris": {
                "sticky_key": "header:X-User-Id",
                "stable": "v1",
                "task": "classification",
                "versions": {
                    "v1": {"backend": "sklearn", "path": str(iris_dir / "iris-v1.skops")},
                    "v2": {"backend": "onnx", "path": str(iris_dir / "iris-v2.onnx")},
                    "v3": example["models"]["iris"]["versions"]["v3"],
                    "slow": {"backend": "fake", "label": 1, "latency_ms": 2000},
                },
            }
        },
    }
    with running(tmp_path_factory.mktemp("traffic"), config) as process:
        with Client(process.url, token=OPERATOR) as client:

            def all_versions_ready() -> bool:
                return all(v["health"] == "ready" for v in client.model("iris")["versions"])

            eventually(all_versions_ready, timeout_s=60)
        yield process


@pytest.fixture
def ops(gateway: GatewayProcess) -> Iterator[Client]:
    with Client(gateway.url, token=OPERATOR) as client:
        yield client


def served(client: Client, version: str) -> dict[str, Any]:
    """The version's served figures over the last 5 minutes ({} before any traffic)."""
    versions = {v["name"]: v for v in client.model("iris", window_s=300)["versions"]}
    return dict(versions[version]["served"] or {})


def assert_books_balance(stats: TrafficStats) -> None:
    assert stats.ok + stats.failed == stats.sent
    assert sum(stats.failures_by_status.values()) == stats.failed
    assert stats.in_flight == 0
    assert stats.feedback_pending == 0


def test_requests_beyond_the_concurrency_bound_are_skipped_and_timeouts_fail(
    gateway: GatewayProcess, ops: Client
) -> None:
    ops.set_routing("iris", {"slow": 100})
    # The version takes 2 s; the client gives up after 0.4 s. With 2 in flight at
    # most, most of the ~20 requests due in one second cannot be sent. (First in this
    # file, so that the gateway has finished these calls before it is stopped.)
    stats = run_traffic(
        gateway.url,
        "iris",
        1.0,
        rate_per_s=20,
        concurrency=2,
        timeout_s=0.4,
        feedback=False,
        rng=random.Random(4),
    )
    assert_books_balance(stats)
    assert stats.skipped > 0, stats
    assert stats.sent > 0
    assert stats.failures_by_status == {TRANSPORT_ERROR: stats.sent}
    assert stats.by_version == {}
    assert all("Timeout" in error for error in stats.last_errors), stats.last_errors
    ops.set_routing("iris", {"v1": 100})


def test_sends_about_the_requested_rate_and_every_request_succeeds(
    gateway: GatewayProcess, ops: Client
) -> None:
    ops.set_routing("iris", {"v1": 100})
    stats = run_traffic(
        gateway.url, "iris", 1.5, rate_per_s=60, feedback=False, noise=0.1, rng=random.Random(1)
    )
    assert_books_balance(stats)
    # 90 requests asked for; the bounds only catch a broken schedule, not a slow machine.
    assert 45 <= stats.sent <= 135, stats
    assert 30 <= stats.requests_per_s <= 90, stats.requests_per_s
    assert stats.ok == stats.sent, list(stats.last_errors)
    assert stats.failed == 0
    assert stats.by_version == {"v1": stats.sent}
    assert stats.feedback_sent == stats.feedback_failed == 0


def test_a_50_50_split_reaches_both_versions_and_their_feedback_is_scored(
    gateway: GatewayProcess, ops: Client
) -> None:
    before = {v: served(ops, v).get("feedback", 0) for v in ("v1", "v2")}
    ops.set_routing("iris", {"v1": 50, "v2": 50})
    stats = run_traffic(
        gateway.url,
        "iris",
        2.0,
        rate_per_s=100,
        feedback_delay_s=(0.05, 0.3),
        feedback_token=FEEDBACK,
        rng=random.Random(2),
    )
    assert_books_balance(stats)
    assert stats.ok == stats.sent > 0, list(stats.last_errors)
    assert set(stats.by_version) == {"v1", "v2"}
    assert 0.25 <= stats.by_version["v2"] / stats.sent <= 0.75, stats.by_version
    assert stats.feedback_sent == stats.ok
    assert stats.feedback_failed == stats.feedback_dropped == 0

    def feedback_counted() -> bool:
        return all(
            served(ops, v).get("feedback", 0) - before[v] == stats.by_version[v]
            for v in ("v1", "v2")
        )

    eventually(feedback_counted)
    for version in ("v1", "v2"):
        assert 0.0 <= served(ops, version)["accuracy"] <= 1.0
    # The good candidate scores well only if each row went out with its own true label.
    assert served(ops, "v2")["accuracy"] >= 0.8


def test_failures_of_the_faulty_version_are_counted_with_their_status(
    gateway: GatewayProcess, ops: Client
) -> None:
    ops.set_routing("iris", {"v3": 100})
    # About 200 calls: v3 fails ~5 % of them.
    stats = run_traffic(
        gateway.url,
        "iris",
        2.0,
        rate_per_s=100,
        feedback_delay_s=(0.05, 0.2),
        feedback_token=FEEDBACK,
        rng=random.Random(3),
    )
    assert_books_balance(stats)
    assert stats.failed > 0, stats
    assert stats.failures_by_status == {502: stats.failed}
    assert stats.failed_by_version == {"v3": stats.failed}
    assert stats.by_version == {"v3": stats.sent}
    assert stats.ok > stats.failed
    # Only answered requests get feedback.
    assert stats.feedback_sent == stats.ok
    assert any("HTTP 502 from v3" in error for error in stats.last_errors), stats.last_errors
    assert len(stats.last_errors) <= 10


def test_stop_from_another_thread_ends_an_open_ended_run(
    gateway: GatewayProcess, ops: Client
) -> None:
    ops.set_routing("iris", {"v1": 100})
    generator = TrafficGenerator(
        gateway.url,
        "iris",
        rate_per_s=50,
        feedback_delay_s=(0.0, 0.1),
        feedback_token=FEEDBACK,
        rng=random.Random(5),
    )
    result: list[TrafficStats] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(generator.run())))
    thread.start()
    try:
        eventually(lambda: generator.stats.ok >= 10)
        live = generator.stats.snapshot()
    finally:
        generator.stop()
        generator.stop()
        thread.join(timeout=15)
    assert not thread.is_alive()
    (stats,) = result
    assert_books_balance(stats)
    assert stats.sent >= live.sent >= 10
    assert live.by_version is not generator.stats.by_version
    assert stats.ok == stats.sent, list(stats.last_errors)
    assert stats.feedback_sent == stats.ok
    with pytest.raises(RuntimeError, match="runs once"):
        asyncio.run(generator.run(0.1))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate_per_s": 0}, "rate_per_s"),
        ({"rate_per_s": 1, "users": 0}, "users"),
        ({"rate_per_s": 1, "feedback_delay_s": (2.0, 1.0)}, "feedback_delay_s"),
        ({"rate_per_s": 1, "labels": [0]}, "without rows"),
        ({"rate_per_s": 1, "rows": [[1.0]]}, "feedback needs the true labels"),
        ({"rate_per_s": 1, "rows": [[1.0], [1.0, 2.0]], "feedback": False}, "same number"),
        ({"rate_per_s": 1, "rows": [[1.0]], "labels": [0, 1]}, "1 rows but 2 labels"),
    ],
)
def test_bad_options_are_refused_with_the_option_named(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TrafficGenerator("http://127.0.0.1:9", "iris", **options)
