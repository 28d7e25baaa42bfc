"""A rollout in progress owns its model's routing: the controller puts it back."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollwise.controller import Controller
from rollwise.domain import Event, ModelSpec, Routing, VersionSpec
from rollwise.rollouts import Rollouts
from rollwise.store import Store, open_store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = open_store(f"sqlite:///{tmp_path}/repair.db")
    opened.migrate()
    versions = {v: VersionSpec(v, "fake") for v in ("v1", "v2")}
    opened.sync_models([ModelSpec("iris", "v1", versions)], 0.0)
    return opened


def test_routing_changed_under_a_rollout_is_set_again_at_the_next_tick(store: Store) -> None:
    clock = [1000.0]
    Rollouts(store, clock=lambda: clock[0]).apply(
        {"model": "iris", "candidate": "v2", "strategy": "canary", "canary": {"weights": [10]}},
        actor="ops",
    )
    controller = Controller(store, clock=lambda: clock[0], settle_s=0.0)
    clock[0] += 1
    assert controller.tick() == []  # nothing to do: the routing is the rollout's
    assert store.get_routing("iris") == Routing("iris", "v1", {"v1": 90, "v2": 10}, salt="iris")

    # Something outside the rollout (a config change, a forced write) resets it.
    reset = Event(model="iris", kind="routing.reset", message="reset", at_s=clock[0])
    store.set_routing(Routing("iris", "v1", {"v1": 100}, salt="iris"), reset, force=True)
    clock[0] += 1
    changed = controller.tick()
    assert [r.status.weight for r in changed] == [10]
    assert store.get_routing("iris") == Routing("iris", "v1", {"v1": 90, "v2": 10}, salt="iris")
    restored = store.list_events("iris", latest=True, limit=1)[0]
    assert restored.kind == "rollout.routing_restored"
    assert restored.data["found"]["weights"] == {"v1": 100}
    clock[0] += 1
    assert controller.tick() == []
