"""This replica as a member of the fleet: its heartbeat, and the load state of each of
its versions, written to the store where the controller and every other replica read
them.

Heartbeats never bump the store's state counter, so they cost the other replicas'
routing polls nothing. The version states are written when they change, and again
every few beats so that a report lost to a store outage is repaired.
"""

from __future__ import annotations

import logging
import os
import socket

import rollwise
from rollwise.domain import Replica, ReplicaVersion
from rollwise.runtime.context import Context
from rollwise.runtime.versions import Versions

log = logging.getLogger("rollwise.gateway")

REPORT_EVERY_BEATS = 10


class Membership:
    """Heartbeats and version-state reports of one replica."""

    def __init__(self, ctx: Context, versions: Versions) -> None:
        self.ctx = ctx
        self.versions = versions
        self.started_at_s = ctx.clock()
        self._reported: tuple[ReplicaVersion, ...] | None = None
        self._beats = 0

    def replica(self) -> Replica:
        return Replica(
            id=self.ctx.replica,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at_s=self.started_at_s,
            last_seen_s=self.ctx.clock(),
            rollwise_version=rollwise.__version__,
        )

    def states(self) -> tuple[ReplicaVersion, ...]:
        now = self.ctx.clock()
        return tuple(
            ReplicaVersion(
                replica=self.ctx.replica,
                model=model,
                version=version,
                health=state.health,
                error=state.reason,
                artifact_sha256=state.artifact_sha256,
                updated_at_s=now,
            )
            for (model, version), state in sorted(self.versions.states.items())
        )

    async def beat(self) -> None:
        """One heartbeat, with the version states when they changed."""
        ctx = self.ctx
        await ctx.db(ctx.store.heartbeat, self.replica())
        await self.report(force=self._beats % REPORT_EVERY_BEATS == 0)
        self._beats += 1

    async def report(self, force: bool = False) -> None:
        states = self.states()
        if not force and self._reported is not None and _same(states, self._reported):
            return
        await self.ctx.db(self.ctx.store.report_versions, self.ctx.replica, states)
        self._reported = states

    async def leave(self) -> None:
        """Say goodbye: the fleet stops counting this replica at once."""
        try:
            await self.ctx.db(self.ctx.store.replica_stopped, self.ctx.replica, self.ctx.clock())
        except Exception:
            log.exception("could not record this replica's stop; its heartbeat will expire")
        else:
            log.info("replica %s left the fleet", self.ctx.replica)


def _same(a: tuple[ReplicaVersion, ...], b: tuple[ReplicaVersion, ...]) -> bool:
    def key(states: tuple[ReplicaVersion, ...]) -> list[tuple[str, str, str, str, str]]:
        return [(s.model, s.version, s.health.value, s.error, s.artifact_sha256) for s in states]

    return key(a) == key(b)
