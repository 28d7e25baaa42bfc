"""Persistence of rollwise: the catalog of models and versions, routing, rollouts,
leases, events, metrics, predictions, feedback and the fleet of replicas.

``open_store(url)`` gives a ``Store`` on SQLite (one machine) or PostgreSQL (replicas
sharing one database). Call ``migrate()`` once at start-up before anything else.
"""

from __future__ import annotations

from rollwise.store.base import (
    ACTIVE_PHASES,
    CatalogStore,
    EventStore,
    FeedbackRecord,
    FleetStore,
    Lease,
    LeaseStore,
    MetricBucketRow,
    MetricsStore,
    PredictionRecord,
    PredictionStore,
    RetireRefusal,
    RolloutRow,
    RolloutStore,
    RoutingStore,
    StateStore,
    Store,
)
from rollwise.store.engine import create_store_engine, parse_store_url
from rollwise.store.sql import EVENT_ROUTING_INITIALIZED, EVENT_ROUTING_RESET, SqlStore

__all__ = [
    "ACTIVE_PHASES",
    "EVENT_ROUTING_INITIALIZED",
    "EVENT_ROUTING_RESET",
    "CatalogStore",
    "EventStore",
    "FeedbackRecord",
    "FleetStore",
    "Lease",
    "LeaseStore",
    "MetricBucketRow",
    "MetricsStore",
    "PredictionRecord",
    "PredictionStore",
    "RetireRefusal",
    "RolloutRow",
    "RolloutStore",
    "RoutingStore",
    "SqlStore",
    "StateStore",
    "Store",
    "open_store",
]


def open_store(url: str) -> Store:
    """Open the store at ``url`` and check that the database answers.

    ``sqlite:///path.db`` (relative to the current directory), ``sqlite:////abs/path.db``,
    ``sqlite://`` (in memory, for tests) or ``postgresql://user@host:port/db``. Query
    parameters of a PostgreSQL URL go to libpq, e.g. ``?sslmode=require`` or
    ``?options=-csearch_path%3Drollwise`` to keep the tables in a schema of their own.

    A bad URL raises ``ConfigError``; a database that cannot be reached raises
    ``StoreError``. The schema is not touched: call ``migrate()`` next.
    """
    target = parse_store_url(url)
    store = SqlStore(target, create_store_engine(target))
    try:
        store.check_connection()
    except BaseException:
        store.close()
        raise
    return store
