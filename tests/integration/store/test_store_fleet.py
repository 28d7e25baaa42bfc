"""The fleet in the store, alike on SQLite and PostgreSQL: replicas' heartbeats and the
load state of each version in each replica, none of which moves the state counter."""

from __future__ import annotations

import pytest

from rollwise.domain import Replica, ReplicaVersion, VersionHealth
from rollwise.errors import NotFound, ValidationError
from rollwise.store import Store

READY = VersionHealth.READY


def replica(
    id: str = "r1",
    started: float = 10.0,
    seen: float = 20.0,
    pid: int = 100,
    rollwise_version: str = "1.2.3",
    stopped: bool = False,
) -> Replica:
    return Replica(id, f"host-{id}", pid, started, seen, rollwise_version, stopped)


def state(
    version: str,
    replica: str = "r1",
    health: VersionHealth = READY,
    model: str = "iris",
    error: str = "",
    artifact_sha256: str = "",
    updated_at_s: float = 0.0,
) -> ReplicaVersion:
    return ReplicaVersion(replica, model, version, health, error, artifact_sha256, updated_at_s)


def keys(states: list[ReplicaVersion]) -> list[tuple[str, str, str]]:
    return [(s.replica, s.model, s.version) for s in states]


# heartbeats -----------------------------------------------------------------------------


def test_a_heartbeat_records_the_replica_then_refreshes_it(store: Store) -> None:
    store.heartbeat(replica())
    assert store.list_replicas() == [replica()]

    # A restarted process under the same id: new pid, new start, newer heartbeat.
    store.heartbeat(replica(started=30.0, seen=31.0, pid=200, rollwise_version="1.3.0"))

    assert store.list_replicas() == [
        replica(started=30.0, seen=31.0, pid=200, rollwise_version="1.3.0")
    ]


def test_replicas_are_listed_oldest_start_first(store: Store) -> None:
    for id, started in (("b", 30.0), ("c", 10.0), ("a", 20.0)):
        store.heartbeat(replica(id, started=started))

    assert [r.id for r in store.list_replicas()] == ["c", "a", "b"]


def test_no_fleet_write_bumps_the_state_counter_or_writes_an_event(store: Store) -> None:
    store.heartbeat(replica())
    store.report_versions("r1", [state("v1")])
    store.heartbeat(replica(seen=21.0))
    store.replica_stopped("r1", 22.0)
    store.prune_replicas(older_than_s=100.0)

    assert store.state_version() == 0
    assert store.list_events() == []


# version states -------------------------------------------------------------------------


@pytest.mark.parametrize("health", list(VersionHealth), ids=[h.value for h in VersionHealth])
def test_a_version_state_round_trips(store: Store, health: VersionHealth) -> None:
    store.heartbeat(replica())
    reported = state(
        "v1", health=health, error="boom: no file", artifact_sha256="cd" * 32, updated_at_s=12.5
    )

    store.report_versions("r1", [reported])

    assert store.list_replica_versions() == [reported]
    assert isinstance(store.list_replica_versions()[0].health, VersionHealth)


def test_a_report_replaces_the_replicas_whole_set_and_no_other(store: Store) -> None:
    store.heartbeat(replica("r1"))
    store.heartbeat(replica("r2"))
    store.report_versions("r1", [state("v1"), state("v2", health=VersionHealth.LOADING)])
    store.report_versions("r2", [state("v1", "r2")])

    store.report_versions(
        "r1", [state("v2"), state("v3", health=VersionHealth.FAILED, error="bad file")]
    )

    assert store.list_replica_versions() == [
        state("v1", "r2"),
        state("v2"),
        state("v3", health=VersionHealth.FAILED, error="bad file"),
    ]
    store.report_versions("r1", [])
    assert keys(store.list_replica_versions()) == [("r2", "iris", "v1")]


def test_version_states_filter_by_model_in_model_version_replica_order(store: Store) -> None:
    for id in ("r2", "r1"):
        store.heartbeat(replica(id))
        store.report_versions(id, [state("v2", id), state("v1", id, model="wine"), state("v1", id)])

    assert keys(store.list_replica_versions()) == [
        ("r1", "iris", "v1"),
        ("r2", "iris", "v1"),
        ("r1", "iris", "v2"),
        ("r2", "iris", "v2"),
        ("r1", "wine", "v1"),
        ("r2", "wine", "v1"),
    ]
    assert keys(store.list_replica_versions("wine")) == [
        ("r1", "wine", "v1"),
        ("r2", "wine", "v1"),
    ]
    assert store.list_replica_versions("ghost") == []


REPORT_REFUSALS: dict[str, tuple[str, list[ReplicaVersion], type[Exception], str]] = {
    "a replica without a heartbeat is not found": (
        "r9",
        [state("v1", "r9")],
        NotFound,
        r"replica 'r9' has no heartbeat on record",
    ),
    "a state of another replica is refused": (
        "r1",
        [state("v2"), state("v1", "r2")],
        ValidationError,
        r"replica 'r1' reported a state of replica 'r2'",
    ),
    "a version reported twice is refused": (
        "r1",
        [state("v2"), state("v2", health=VersionHealth.FAILED)],
        ValidationError,
        r"reported version 'v2' of model 'iris' twice",
    ),
}


@pytest.mark.parametrize(
    ("replica_id", "states", "error", "match"),
    list(REPORT_REFUSALS.values()),
    ids=list(REPORT_REFUSALS),
)
def test_a_refused_report_writes_nothing(
    store: Store,
    replica_id: str,
    states: list[ReplicaVersion],
    error: type[Exception],
    match: str,
) -> None:
    store.heartbeat(replica("r1"))
    store.report_versions("r1", [state("v1")])

    with pytest.raises(error, match=match):
        store.report_versions(replica_id, states)

    assert store.list_replica_versions() == [state("v1")]


# stopping and pruning -------------------------------------------------------------------


def test_a_stopped_replica_stays_listed_without_its_versions(store: Store) -> None:
    for id in ("r1", "r2"):
        store.heartbeat(replica(id))
        store.report_versions(id, [state("v1", id)])

    store.replica_stopped("r1", 25.0)
    store.replica_stopped("ghost", 25.0)

    assert store.list_replicas() == [replica("r1", seen=25.0, stopped=True), replica("r2")]
    assert keys(store.list_replica_versions()) == [("r2", "iris", "v1")]
    # Back under the same id: a heartbeat makes it a member again.
    store.heartbeat(replica("r1", seen=26.0))
    assert store.list_replicas()[0] == replica("r1", seen=26.0)


def test_prune_forgets_replicas_last_seen_before_the_cutoff_with_their_versions(
    store: Store,
) -> None:
    for id, seen in (("old", 10.0), ("edge", 50.0), ("new", 90.0)):
        store.heartbeat(replica(id, started=seen, seen=seen))
        store.report_versions(id, [state("v1", id), state("v2", id)])
    store.heartbeat(replica("gone", started=5.0, seen=5.0))
    store.replica_stopped("gone", 20.0)

    assert store.prune_replicas(older_than_s=50.0) == 2

    assert [r.id for r in store.list_replicas()] == ["edge", "new"]
    assert {s.replica for s in store.list_replica_versions()} == {"edge", "new"}
    assert store.prune_replicas(older_than_s=50.0) == 0
