"""What every part of one gateway process shares: its config, clock, store and models.

The store is reached only through :meth:`Context.db`, which runs a store call in a small
thread pool of its own, so no part of the runtime ever blocks the event loop on the
database. The set of models is an immutable mapping replaced whole when the catalog
changes, so the request path reads it without locks.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from rollwise.config import GatewayConfig
from rollwise.domain import Event, ModelSpec
from rollwise.errors import NotFound, RollwiseError
from rollwise.store.base import Store
from rollwise.tracing import RequestTracer

log = logging.getLogger("rollwise.gateway")
T = TypeVar("T")


class Context:
    """One replica's shared state and services (no request logic here)."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        store: Store | None,
        clock: Callable[[], float],
        rng: random.Random,
        replica: str,
    ) -> None:
        self.config = config
        self.clock = clock
        self.rng = rng
        self.replica = replica
        self.models: Mapping[str, ModelSpec] = dict(config.models)
        self._store = store
        self._db_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="rollwise-store")
        self._background: set[asyncio.Task[None]] = set()
        # Spans of data-plane requests; None (the default) costs the request path one
        # check. Set by the gateway when its config has tracing.otlp_endpoint.
        self.tracer: RequestTracer | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RollwiseError("the gateway has not been started")
        return self._store

    @property
    def has_store(self) -> bool:
        return self._store is not None

    def open_store(self, store: Store) -> None:
        self._store = store

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db_pool, fn, *args)

    def model(self, name: str) -> ModelSpec:
        model = self.models.get(name)
        if model is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise NotFound(f"unknown model {name!r} (models: {known})")
        return model

    async def event(
        self,
        model: str,
        kind: str,
        message: str,
        actor: str,
        data: Mapping[str, Any] | None = None,
    ) -> Event:
        event = Event(
            model=model,
            kind=kind,
            message=message,
            data=dict(data or {}),
            at_s=self.clock(),
            actor=actor,
        )
        return await self.db(self.store.add_event, event)

    def later(self, job: Coroutine[Any, Any, None]) -> None:
        """Run ``job`` in the background; it is cancelled at stop if still running."""
        task = asyncio.get_running_loop().create_task(job)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def cancel_background(self) -> None:
        for task in list(self._background):
            task.cancel()

    def close(self) -> None:
        self._db_pool.shutdown(wait=False)
