"""What the supervisor of ``serve --workers N`` tells the fleet: events in the store.

A worker that died, a rolling restart done, refused or aborted: each is an event (model
``*``, actor ``supervisor``) that ``rollwise events`` and the dashboard show beside the
rollouts'. They are written by a thread of their own, so that a slow or absent database
never holds up a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rollwise.domain import Event
from rollwise.store.base import Store

log = logging.getLogger("rollwise.supervisor")


class SupervisorEvents:
    """Writes the supervisor's events to ``store``, in order, off its loop."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="rollwise-supervisor")

    def record(
        self, kind: str, message: str, data: Mapping[str, Any], gone_replica: str = ""
    ) -> None:
        """Add an event; ``gone_replica``: a worker that died, to mark stopped first."""
        event = Event("*", kind, message, dict(data), at_s=self.clock(), actor="supervisor")
        self._pool.submit(self._write, event, gone_replica)

    def _write(self, event: Event, gone_replica: str) -> None:
        try:
            if gone_replica:
                # A dead worker said no goodbye: the fleet stops counting it now rather
                # than when its heartbeat ages out.
                self.store.replica_stopped(gone_replica, event.at_s)
            self.store.add_event(event)
        except Exception as error:
            log.warning("could not record the event %s in the store: %s", event.kind, error)

    def close(self) -> None:
        """Write what is queued, then close the store."""
        self._pool.shutdown(wait=True)
        self.store.close()
