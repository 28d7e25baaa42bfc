"""Events: the append-only record of every change and the reason for it.

Writers of state append their event inside their own transaction (``SqlBase``'s
``_insert_event``); this module adds a standalone event and pages through them by id,
which only ever grows, so a reader that remembers the last id it saw misses nothing.
"""

from __future__ import annotations

import sqlalchemy as sa

from rollwise.domain import Event
from rollwise.store import schema as t
from rollwise.store.sql_base import SqlBase


class Events(SqlBase):
    """``EventStore`` on SQL."""

    def add_event(self, event: Event) -> Event:
        with self._tx(f"adding a {event.kind} event", write=True) as conn:
            return self._insert_event(conn, event)

    def list_events(
        self, model: str | None = None, after_id: int = 0, limit: int = 100, latest: bool = False
    ) -> list[Event]:
        """Events with id > after_id, oldest first, at most ``limit`` (the newest
        ``limit`` of them with ``latest``)."""
        if limit <= 0:
            return []
        query = sa.select(t.events).where(t.events.c.id > after_id)
        if model is not None:
            query = query.where(t.events.c.model == model)
        newest_first = t.events.c.id.desc() if latest else t.events.c.id
        query = query.order_by(newest_first).limit(limit)
        with self._tx("listing events", write=False) as conn:
            rows = conn.execute(query).all()
        if latest:
            rows = list(reversed(rows))
        return [
            Event(
                model=r.model,
                kind=r.kind,
                message=r.message,
                data=r.data,
                at_s=r.at_s,
                id=int(r.id),
                actor=r.actor,
            )
            for r in rows
        ]
