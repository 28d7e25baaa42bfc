"""A metrics read over many stored buckets is read and merged off the event loop, so
requests keep being answered meanwhile; and a window over the limit is refused.

A real SQLite store with synthetic buckets; where the merge ran is seen by the thread
that ran it.
"""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollwise.config import parse_config
from rollwise.domain import Role
from rollwise.errors import ValidationError
from rollwise.metrics.recorder import VersionWindow
from rollwise.runtime import telemetry as telemetry_module
from rollwise.runtime.context import Context
from rollwise.runtime.gateway import Gateway
from rollwise.runtime.telemetry import MAX_METRICS_WINDOW_S, Telemetry
from rollwise.server.auth import Authenticator
from rollwise.server.control import build_control_app
from rollwise.store import open_store
from rollwise.store.base import MetricBucketRow

CONFIG = {"models": {"iris": {"stable": "v1", "versions": {"v1": {"backend": "fake"}}}}}
BUCKETS = 20_000
RECORDS = 20
NOW = 1_000_000.0


def bucket_payload(rng: random.Random) -> dict[str, object]:
    window = VersionWindow()
    for _ in range(RECORDS):
        window.record_call(rng.uniform(0.5, 50.0), failed=False, timed_out=False)
        window.record_outputs([rng.randrange(3)], categorical=True)
    return window.to_payload()


def test_a_long_read_leaves_the_event_loop_free(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    rng = random.Random(0)
    payloads = [bucket_payload(rng) for _ in range(50)]
    rows = [
        MetricBucketRow(
            "iris",
            ("v1", "v2")[n % 2],
            Role.SERVED,
            int(NOW) - BUCKETS + n,
            1,
            f"r{n % 3}",
            payloads[n % len(payloads)],
        )
        for n in range(BUCKETS)
    ]
    store.write_metric_buckets(rows)
    config = parse_config(CONFIG, base_dir=tmp_path, environ={})
    ctx = Context(config, store=store, clock=lambda: NOW, rng=random.Random(0), replica="r")
    telemetry = Telemetry(ctx)

    merging: list[threading.Thread] = []
    real_merge = telemetry_module.windows_by_version

    def recorded_merge(rows: Any) -> dict[tuple[str, Role], VersionWindow]:
        merging.append(threading.current_thread())
        return real_merge(rows)

    async def main() -> tuple[dict[tuple[str, Role], VersionWindow], threading.Thread]:
        return await telemetry.version_metrics("iris", 2 * BUCKETS), threading.current_thread()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(telemetry_module, "windows_by_version", recorded_merge)
        try:
            merged, loop_thread = asyncio.run(main())
        finally:
            store.close()
    assert merged[("v1", Role.SERVED)].requests + merged[("v2", Role.SERVED)].requests == (
        RECORDS * BUCKETS
    )
    # The stored buckets were merged in a store worker, never on the event loop's thread
    # (where merging 20,000 of them would hold up every request meanwhile).
    assert merging and all(thread is not loop_thread for thread in merging)


def test_a_window_over_the_limit_is_refused(tmp_path: Path) -> None:
    config = parse_config(CONFIG, base_dir=tmp_path, environ={})
    ctx = Context(config, store=None, clock=lambda: NOW, rng=random.Random(0), replica="r")
    with pytest.raises(ValidationError, match="7 days"):
        asyncio.run(Telemetry(ctx).version_metrics("iris", MAX_METRICS_WINDOW_S + 1))


@pytest.mark.parametrize(
    ("window_s", "status"),
    [
        pytest.param(MAX_METRICS_WINDOW_S + 1, 422, id="just over the limit"),
        pytest.param(90 * 86400, 422, id="ninety days"),
        pytest.param(0, 422, id="zero"),
    ],
)
def test_the_control_api_names_the_limit_of_a_window(
    tmp_path: Path, window_s: int, status: int
) -> None:
    gateway = Gateway(parse_config(CONFIG, base_dir=tmp_path, environ={}))
    app = build_control_app(gateway, Authenticator((), insecure_dev=True))

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.get("/api/v1/models", params={"window_s": window_s})

    response = asyncio.run(main())
    assert response.status_code == status
    if window_s > 0:
        assert f"limit of {MAX_METRICS_WINDOW_S} s (7 days)" in response.json()["error"]
