"""What one controller tick costs as a step grows long: measuring a rollout's metrics.

A gateway writes one metric bucket per (version, role, replica) about every second, so an
``analyze`` step that has run an hour has thousands of buckets behind it. The controller
folds settled buckets once per rollout and re-reads only the last three minutes
(``Controller._measure``); the baseline, measured in the same run, reads and merges every
bucket since the step began at every tick. Both are followed by the same judgement
(``rollout.gather``: three gates and the SRM check).

    .venv/bin/python bench/controller_tick.py [--store sqlite|postgresql://...] [--ticks 7]

A PostgreSQL run works in a schema of its own, dropped at the end. Prints the median
milliseconds per tick for steps 1, 10 and 60 minutes old (two versions,
one replica) and the ratio baseline / rollwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time

from rollwise.controller import Controller
from rollwise.domain import ModelSpec, Role, VersionSpec
from rollwise.metrics.recorder import VersionWindow, windows_by_version
from rollwise.rollout import Phase, gather
from rollwise.rollouts import Rollouts, load
from rollwise.store import Store
from rollwise.store.base import MetricBucketRow
from store_write import scratch_store

GATES = [
    {"metric": "error_rate", "max_increase": 0.01},
    {"metric": "latency_p99_ms", "max_ratio": 1.2},
    {"metric": "accuracy", "max_decrease": 0.02},
]


def bucket(rng: random.Random, requests: int) -> dict[str, object]:
    window = VersionWindow()
    for _ in range(requests):
        window.record_call(rng.lognormvariate(0, 0.5), failed=rng.random() < 0.01, timed_out=False)
    window.record_outputs([rng.randrange(3) for _ in range(requests)], True)
    window.feedback = requests // 2
    window.correct = int(requests * 0.45)
    return window.to_payload()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="sqlite", help="sqlite, or a postgresql:// URL")
    parser.add_argument("--ticks", type=int, default=7)
    args = parser.parse_args()
    with scratch_store(None if args.store == "sqlite" else args.store) as store:
        run(store, args.ticks)


def run(store: Store, ticks: int) -> None:
    versions = {v: VersionSpec(v, "fake") for v in ("v1", "v2")}
    model = "bench"
    store.sync_models([ModelSpec(model, "v1", versions)], 0.0)
    start_s = 1_000_000.0
    clock = [start_s]
    Rollouts(store, clock=lambda: clock[0]).apply(
        {
            "model": model,
            "candidate": "v2",
            "strategy": "steps",
            "steps": [{"set_weight": 10}, {"analyze": {"gates": GATES}}],
        },
        actor="bench",
    )
    row = store.list_rollouts(active_only=True)[0]
    rollout = load(row)
    status = dataclasses.replace(rollout.status, phase=Phase.PROGRESSING)
    rng = random.Random(2026)
    written = 0
    print(f"store {store.url}; median of {ticks} ticks")
    print(f"{'step age':>9} {'buckets':>8} {'baseline ms':>12} {'rollwise ms':>12} {'ratio':>7}")
    for age_s in (60, 600, 3600):
        rows = [
            MetricBucketRow(model, v, Role.SERVED, int(start_s) + s, 1, "r1", bucket(rng, n))
            for s in range(written, age_s)
            for v, n in (("v1", 90), ("v2", 10))
        ]
        store.write_metric_buckets(rows)
        written = age_s
        clock[0] = start_s + age_s + 0.5
        controller = Controller(store, clock=lambda: clock[0], settle_s=0.0)

        def naive() -> None:
            found = store.read_metric_buckets(model, int(status.measure_since_s))
            gather(
                rollout.spec,
                status,
                windows_by_version((b.version, b.role, b.payload) for b in found),
            )

        def cached(controller: Controller = controller) -> None:
            gather(rollout.spec, status, controller._measure(rollout.id, status, clock[0]))

        cached()  # the first tick of a controller folds the settled past once
        timings: dict[str, list[float]] = {"naive": [], "cached": []}
        for _ in range(ticks):
            for name, job in (("naive", naive), ("cached", cached)):
                began = time.perf_counter()
                job()
                timings[name].append(time.perf_counter() - began)
        base = statistics.median(timings["naive"]) * 1000
        ours = statistics.median(timings["cached"]) * 1000
        print(f"{age_s:>8}s {2 * age_s:>8} {base:>12.1f} {ours:>12.1f} {base / ours:>6.1f}x")


if __name__ == "__main__":
    main()
