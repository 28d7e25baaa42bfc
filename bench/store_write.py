"""How fast the store takes the gateway's batch writes: predictions and metric buckets.

The gateway flushes about once a second, up to thousands of rows per flush. This writes
``--batches`` batches of ``--rows`` rows of each kind and prints rows per second:

    .venv/bin/python bench/store_write.py                       # a temporary SQLite file
    .venv/bin/python bench/store_write.py --url postgresql://postgres@127.0.0.1:5432/test

A PostgreSQL run works in a schema of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import psycopg
import sqlalchemy as sa
from psycopg import sql

from rollwise.domain import Role
from rollwise.store import MetricBucketRow, PredictionRecord, Store, open_store

T = TypeVar("T")


@contextmanager
def scratch_store(url: str | None) -> Iterator[Store]:
    """A migrated store on an empty database, removed afterwards."""
    if url is None:
        with tempfile.TemporaryDirectory() as folder:
            store = open_store(f"sqlite:///{Path(folder) / 'bench.db'}")
            store.migrate()
            try:
                yield store
            finally:
                store.close()
        return
    schema = f"bench_{secrets.token_hex(4)}"
    conninfo = sa.make_url(url).render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            scoped = sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
            store = open_store(scoped.render_as_string(hide_password=False))
            store.migrate()
            try:
                yield store
            finally:
                store.close()
        finally:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def predictions(batch: int, rows: int) -> list[PredictionRecord]:
    return [
        PredictionRecord(
            request_id=f"req-{batch}-{i}",
            model="iris",
            version="v2" if i % 10 == 0 else "v1",
            role=Role.SHADOW if i % 20 == 0 else Role.SERVED,
            outputs=[[0.1, 0.7, 0.2]],
            at_s=1_700_000_000.0 + batch + i / rows,
        )
        for i in range(rows)
    ]


def buckets(batch: int, rows: int) -> list[MetricBucketRow]:
    # A summary the size of the gateway's: counters and a 40-bucket latency histogram.
    return [
        MetricBucketRow(
            model=f"model-{i % 50}",
            version=f"v{i % 4}",
            role=Role.SERVED,
            start_s=1_700_000_000 + batch,
            width_s=1,
            replica=f"replica-{i % 7}",
            payload={
                "requests": 120 + i,
                "errors": i % 3,
                "latency_ms": {"counts": [(i * k) % 17 for k in range(40)], "sum": 812.5},
            },
        )
        for i in range(rows)
    ]


def measure(batches: list[list[T]], write: Callable[[Sequence[T]], None]) -> tuple[float, float]:
    """Rows per second over all batches, and the median time of one batch in ms."""
    times = []
    for rows in batches:
        start = time.perf_counter()
        write(rows)
        times.append(time.perf_counter() - start)
    return sum(len(rows) for rows in batches) / sum(times), statistics.median(times) * 1000


def report(name: str, result: tuple[float, float]) -> None:
    rate, median_ms = result
    print(f"{name:22} {rate:>10,.0f} rows/s   {median_ms:7.1f} ms per batch (median)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", help="postgresql://... (default: a temporary SQLite file)")
    parser.add_argument("--rows", type=int, default=2_000, help="rows per batch")
    parser.add_argument("--batches", type=int, default=30)
    args = parser.parse_args()

    with scratch_store(args.url) as store:
        print(f"store: {store.url if args.url else 'SQLite (temporary file)'}")
        print(f"batches of {args.rows} rows, {args.batches} batches of each kind")
        batches = range(args.batches)
        report(
            "log_predictions",
            measure([predictions(b, args.rows) for b in batches], store.log_predictions),
        )
        report(
            "write_metric_buckets",
            measure([buckets(b, args.rows) for b in batches], store.write_metric_buckets),
        )


if __name__ == "__main__":
    main()
