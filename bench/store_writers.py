"""How one SQLite store copes with N gateway workers writing to it at once.

N processes each do, every second, what one worker does: write one batch of metric
buckets (6 rows), log ``--rate`` predictions, heartbeat, try the controller lease and
poll the routing. Printed per N: the latency of each kind of write (p50, p99, max, in
ms), failed writes, and the predictions a second all workers achieved.

    .venv/bin/python bench/store_writers.py                        # N = 1 2 4 8, 1,000/s each
    .venv/bin/python bench/store_writers.py --workers 4 8 --rate 5000
    .venv/bin/python bench/store_writers.py --url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

KINDS = ("predictions", "buckets", "heartbeat", "lease", "poll")


def worker(url: str, seconds: float, rate: int, out: Any) -> None:
    """One worker's writes, once a second for ``seconds``; results go to ``out``."""
    from rollwise.domain import Replica, Role
    from rollwise.store import MetricBucketRow, PredictionRecord, open_store

    store = open_store(url)
    replica = f"w-{os.getpid()}"
    latencies: dict[str, list[float]] = {kind: [] for kind in KINDS}
    failures = 0
    started_s = time.time()
    next_tick = time.monotonic()
    end = next_tick + seconds
    logged = 0
    while time.monotonic() < end:
        now = time.time()
        buckets = [
            MetricBucketRow(
                "m",
                f"v{i % 2}",
                Role.SERVED,
                int(now),
                1,
                replica,
                {"requests": rate // 2, "errors": 1, "latency_ms": {"10": rate // 2}},
            )
            for i in range(6)
        ]
        predictions = [
            PredictionRecord(secrets.token_hex(16), "m", "v1", Role.SERVED, [1], now)
            for _ in range(rate)
        ]
        me = Replica(replica, "bench", os.getpid(), started_s, now)
        jobs: list[tuple[str, Callable[..., object], tuple[Any, ...]]] = [
            ("buckets", store.write_metric_buckets, (buckets,)),
            ("predictions", store.log_predictions, (predictions,)),
            ("heartbeat", store.heartbeat, (me,)),
            ("lease", store.acquire_lease, ("controller", replica, now, 10.0)),
            ("poll", store.state_version, ()),
        ]
        for kind, job, job_args in jobs:
            began = time.perf_counter()
            try:
                job(*job_args)
            except Exception as error:
                failures += 1
                print(f"failed {kind}: {error}", flush=True)
            latencies[kind].append((time.perf_counter() - began) * 1000.0)
        logged += rate
        next_tick += 1.0
        time.sleep(max(0.0, next_tick - time.monotonic()))
    store.close()
    out.put((latencies, failures, logged))


def run(url: str, count: int, seconds: float, rate: int) -> None:
    context = mp.get_context("spawn")
    results_queue = context.Queue()
    processes = [
        context.Process(target=worker, args=(url, seconds, rate, results_queue))
        for _ in range(count)
    ]
    for process in processes:
        process.start()
    results = [results_queue.get() for _ in processes]
    for process in processes:
        process.join()
    failures = sum(r[1] for r in results)
    per_s = sum(r[2] for r in results) / seconds
    for kind in KINDS:
        values = sorted(v for r in results for v in r[0][kind])
        p99 = values[min(len(values) - 1, int(0.99 * len(values)))]
        print(
            f"{count:>3} {per_s:>8.0f} {kind:>12} {statistics.median(values):>8.1f} "
            f"{p99:>8.1f} {values[-1]:>8.1f} {failures if kind == 'predictions' else ''}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--rate", type=int, default=1000, help="predictions a second per worker")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--url", default=None, help="a store URL; default: a new SQLite file")
    args = parser.parse_args()
    from rollwise.store import open_store

    print(f"{'N':>3} {'pred/s':>8} {'write':>12} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} failed")
    for count in args.workers:
        with tempfile.TemporaryDirectory() as folder:
            url = args.url or f"sqlite:///{Path(folder) / 'writers.db'}"
            store = open_store(url)
            store.migrate()
            store.close()
            run(url, count, args.seconds, args.rate)


if __name__ == "__main__":
    main()
