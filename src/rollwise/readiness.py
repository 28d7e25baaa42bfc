"""Readiness of a version across the fleet, read from the store.

Every replica reports the load state of each of its versions with its heartbeat; this
module reads those reports and judges them with the pure rules of :mod:`rollwise.fleet`.
The controller and the control API decide on this, never on one process's memory, so a
rollout waits for the whole fleet whichever replica runs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rollwise.fleet import CandidateVerdict, FleetReadiness, candidate_verdict, fleet_readiness
from rollwise.store.base import Store


class StoreReadiness:
    """Fleet readiness of versions, from the replicas' reports in the store."""

    def __init__(
        self,
        store: Callable[[], Store],
        *,
        clock: Callable[[], float] = time.time,
        heartbeat_timeout_s: float = 10.0,
    ) -> None:
        self._store = store
        self.clock = clock
        self.heartbeat_timeout_s = heartbeat_timeout_s

    def of(self, model: str, version: str) -> FleetReadiness:
        store = self._store()
        replicas = store.list_replicas()
        states = store.list_replica_versions(model)
        return fleet_readiness(
            model, version, replicas, states, self.clock(), self.heartbeat_timeout_s
        )

    def of_model(self, model: str) -> dict[str, FleetReadiness]:
        """Fleet readiness of every version of ``model`` that any replica reports, in
        two reads whatever the number of versions."""
        store = self._store()
        replicas = store.list_replicas()
        states = store.list_replica_versions(model)
        now = self.clock()
        names = sorted({state.version for state in states})
        return {
            name: fleet_readiness(model, name, replicas, states, now, self.heartbeat_timeout_s)
            for name in names
        }

    def verdict(self, model: str, version: str) -> tuple[CandidateVerdict, str]:
        return candidate_verdict(self.of(model, version))

    def readiness(self, model: str, version: str) -> tuple[bool, str]:
        """(ready on every live replica, why not): the ``Readiness`` the rollouts use."""
        found = self.of(model, version)
        return found.everywhere, "" if found.everywhere else found.why_not()
