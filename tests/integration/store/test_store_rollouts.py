"""Rollouts and the controller's lease in the store, alike on SQLite and PostgreSQL.

The store keeps a rollout's spec and status as JSON it does not interpret; what it
guarantees is that a model has one rollout in progress at a time, that two writers of
the same revision cannot both save, that a controller which lost its lease cannot
write, and that a refused write leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Callable
from typing import Any

import pytest

from rollwise.domain import Event, ModelSpec, Routing, VersionSpec
from rollwise.errors import Conflict, NotFound, ValidationError
from rollwise.store import ACTIVE_PHASES, Lease, RolloutRow, Store, open_store

TERMINAL_PHASES = ("succeeded", "aborted", "rolled_back")
LEASE = "controller"
TTL_S = 5.0


def model_spec(name: str = "iris") -> ModelSpec:
    return ModelSpec(
        name=name,
        stable="v1",
        versions={v: VersionSpec(name=v, backend="sklearn") for v in ("v1", "v2", "v3")},
    )


def canary(model: str = "iris", weight: int = 10, candidate: str = "v2") -> Routing:
    return Routing(
        model=model, stable="v1", weights={"v1": 100 - weight, candidate: weight}, salt=model
    )


def rollout(
    model: str = "iris", phase: str = "pending", candidate: str = "v2", at_s: float = 10.0
) -> RolloutRow:
    return RolloutRow(
        model=model,
        phase=phase,
        spec={"strategy": "canary", "candidate": candidate, "steps": [10, 50, 100]},
        status={"step": 0, "weight": 0},
        created_at_s=at_s,
        updated_at_s=at_s,
    )


def note(kind: str, model: str = "iris", at_s: float = 10.0) -> Event:
    return Event(model=model, kind=kind, message=kind, at_s=at_s, actor="controller")


def snapshot(store: Store) -> tuple[Any, ...]:
    """Everything a rollout write may change, to show that a refused one changed nothing."""
    return (
        store.state_version(),
        store.list_routings(),
        store.list_events(limit=1_000),
        store.list_rollouts(limit=1_000),
    )


def run_threads(count: int, work: Callable[[int], None]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(index: int) -> None:
        try:
            start.wait()
            work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.fixture
def iris(store: Store) -> Store:
    """The store with models iris and wine recorded (100 % on v1 each)."""
    store.sync_models([model_spec("iris"), model_spec("wine")], now_s=1.0)
    return store


def started(store: Store, phase: str = "progressing", model: str = "iris") -> RolloutRow:
    """A rollout of ``model`` that is now in ``phase`` (revision 2)."""
    row = store.start_rollout(rollout(model), events=[])
    return store.save_rollout(
        dataclasses.replace(row, phase=phase, updated_at_s=11.0), expected_revision=1
    )


# start, get, latest, list -----------------------------------------------------------


def test_start_inserts_revision_one_with_its_routing_and_events(iris: Store) -> None:
    before = iris.state_version()

    row = iris.start_rollout(
        rollout(), events=[note("rollout.started"), note("routing.changed")], routing=canary()
    )

    assert row.id is not None and row.revision == 1
    assert row == dataclasses.replace(rollout(), id=row.id, revision=1)
    assert iris.get_rollout(row.id) == row
    assert iris.get_routing("iris") == canary()
    assert iris.state_version() == before + 1
    assert [e.kind for e in iris.list_events("iris")][-2:] == [
        "rollout.started",
        "routing.changed",
    ]


def test_start_without_routing_leaves_routing_and_counter_alone(iris: Store) -> None:
    before = (iris.state_version(), iris.list_routings())

    iris.start_rollout(rollout(), events=[])

    assert (iris.state_version(), iris.list_routings()) == before


def test_rollouts_are_read_by_id_latest_and_list_newest_first(iris: Store) -> None:
    first = started(iris, "succeeded")
    second = started(iris, "aborted")
    wine = iris.start_rollout(rollout("wine"), events=[])
    third = iris.start_rollout(rollout(candidate="v3"), events=[])
    assert first.id is not None

    assert iris.get_rollout(first.id) == first
    assert iris.get_rollout(999_999) is None
    assert iris.latest_rollout("iris") == third
    assert iris.latest_rollout("ghost") is None
    assert iris.list_rollouts("iris") == [third, second, first]
    assert iris.list_rollouts() == [third, wine, second, first]
    assert iris.list_rollouts(active_only=True) == [third, wine]
    assert iris.list_rollouts("iris", active_only=True) == [third]
    assert iris.list_rollouts(limit=2) == [third, wine]
    assert iris.list_rollouts(limit=0) == []


def test_starting_a_rollout_of_an_unknown_model_is_not_found(iris: Store) -> None:
    before = snapshot(iris)

    with pytest.raises(NotFound, match="ghost"):
        iris.start_rollout(rollout("ghost"), events=[note("rollout.started", "ghost")])
    assert snapshot(iris) == before


@pytest.mark.parametrize("phase", ACTIVE_PHASES)
def test_start_is_refused_while_a_rollout_is_in_progress(iris: Store, phase: str) -> None:
    active = started(iris, phase)
    before = snapshot(iris)

    with pytest.raises(Conflict) as refused:
        iris.start_rollout(
            rollout(candidate="v3"), events=[note("rollout.started")], routing=canary()
        )

    assert str(refused.value).startswith(
        f"model 'iris' has a rollout in progress (#{active.id}, canary to v2, {phase})"
    )
    assert "replace" in str(refused.value)
    assert snapshot(iris) == before


@pytest.mark.parametrize("phase", TERMINAL_PHASES)
def test_start_is_allowed_once_the_previous_rollout_ended(iris: Store, phase: str) -> None:
    ended = started(iris, phase)

    row = iris.start_rollout(rollout(candidate="v3"), events=[])

    assert row.id is not None and ended.id is not None and row.id > ended.id
    assert iris.latest_rollout("iris") == row


def test_starters_racing_for_one_model_start_one_rollout(iris: Store, store_url: str) -> None:
    """Replicas applying rollouts at once, each through its own store: one wins."""
    stores = [open_store(store_url) for _ in range(4)]
    outcomes: list[str] = ["" for _ in stores]

    def work(index: int) -> None:
        try:
            stores[index].start_rollout(
                rollout(candidate="v2" if index % 2 else "v3"),
                events=[note("rollout.started")],
                routing=canary(weight=5),
            )
            outcomes[index] = "started"
        except Conflict:
            outcomes[index] = "refused"

    try:
        assert run_threads(len(stores), work) == []
    finally:
        for opened in stores:
            opened.close()

    assert sorted(outcomes) == ["refused", "refused", "refused", "started"]
    assert len(iris.list_rollouts("iris", active_only=True)) == 1
    assert [e.kind for e in iris.list_events("iris")].count("rollout.started") == 1


def test_another_models_rollout_does_not_block_a_start(iris: Store) -> None:
    started(iris, "progressing", model="wine")

    assert iris.start_rollout(rollout("iris"), events=[]).revision == 1


# replace ----------------------------------------------------------------------------


def test_replace_saves_the_old_rollout_and_starts_the_new_one(iris: Store) -> None:
    old = started(iris, "paused")
    superseded = dataclasses.replace(
        old, phase="aborted", status={"reason": "replaced"}, updated_at_s=20.0
    )

    new = iris.start_rollout(
        rollout(candidate="v3", at_s=20.0),
        events=[note("rollout.replaced"), note("rollout.started")],
        routing=Routing(model="iris", stable="v1", weights={"v1": 100}, salt="iris"),
        replacing=superseded,
    )

    assert old.id is not None and new.id is not None
    assert iris.get_rollout(old.id) == dataclasses.replace(superseded, revision=old.revision + 1)
    assert iris.get_rollout(new.id) == new and new.revision == 1
    assert iris.list_rollouts("iris", active_only=True) == [new]
    assert [e.kind for e in iris.list_events("iris")][-2:] == [
        "rollout.replaced",
        "rollout.started",
    ]


def _stale_revision(active: RolloutRow, other: RolloutRow | None) -> RolloutRow:
    return dataclasses.replace(active, phase="aborted", revision=active.revision - 1)


def _another_rollout(active: RolloutRow, other: RolloutRow | None) -> RolloutRow:
    assert other is not None
    return dataclasses.replace(other, phase="aborted")


def _still_in_progress(active: RolloutRow, other: RolloutRow | None) -> RolloutRow:
    return dataclasses.replace(active, phase="paused")


@pytest.mark.parametrize(
    ("replacing", "error", "match"),
    [
        pytest.param(_stale_revision, Conflict, r"rollout #\d+ changed meanwhile", id="stale"),
        pytest.param(
            _another_rollout, Conflict, r"rollout #\d+ changed meanwhile", id="not the active one"
        ),
        pytest.param(
            _still_in_progress, ValidationError, "must leave phase 'paused'", id="still active"
        ),
    ],
)
def test_replace_is_refused_unless_it_names_the_active_rollout_as_read(
    iris: Store,
    replacing: Callable[[RolloutRow, RolloutRow | None], RolloutRow],
    error: type[Exception],
    match: str,
) -> None:
    earlier = started(iris, "succeeded")
    active = started(iris, "progressing")
    before = snapshot(iris)

    with pytest.raises(error, match=match):
        iris.start_rollout(
            rollout(candidate="v3"),
            events=[note("rollout.started")],
            routing=canary(),
            replacing=replacing(active, earlier),
        )
    assert snapshot(iris) == before


def test_replace_is_refused_when_the_rollout_ended_meanwhile(iris: Store) -> None:
    active = started(iris, "progressing")
    assert active.id is not None
    iris.save_rollout(dataclasses.replace(active, phase="succeeded"), expected_revision=2)
    before = snapshot(iris)

    with pytest.raises(Conflict, match=f"rollout #{active.id} changed meanwhile"):
        iris.start_rollout(
            rollout(), events=[], replacing=dataclasses.replace(active, phase="aborted")
        )
    assert snapshot(iris) == before


# save -------------------------------------------------------------------------------


def test_save_writes_phase_status_routing_and_events(iris: Store) -> None:
    row = iris.start_rollout(rollout(), events=[])
    before = iris.state_version()
    changed = dataclasses.replace(
        row,
        phase="progressing",
        status={"step": 1, "weight": 10},
        updated_at_s=30.0,
        # The spec of a rollout never changes; a save ignores it.
        spec={"strategy": "blue-green"},
    )

    saved = iris.save_rollout(
        changed,
        expected_revision=1,
        routing=canary(weight=10),
        events=[note("rollout.step", at_s=30.0)],
    )

    assert row.id is not None
    assert saved == dataclasses.replace(changed, spec=row.spec, revision=2)
    assert iris.get_rollout(row.id) == saved
    assert iris.get_routing("iris") == canary(weight=10)
    assert iris.state_version() == before + 1
    assert iris.list_events("iris", latest=True, limit=1)[0].kind == "rollout.step"


def test_save_without_routing_leaves_routing_and_counter_alone(iris: Store) -> None:
    row = iris.start_rollout(rollout(), events=[])
    before = (iris.state_version(), iris.list_routings(), iris.list_events())

    saved = iris.save_rollout(dataclasses.replace(row, phase="paused"), expected_revision=1)

    assert saved.revision == 2
    assert (iris.state_version(), iris.list_routings(), iris.list_events()) == before


def test_two_writers_of_one_revision_cannot_both_save(iris: Store) -> None:
    row = iris.start_rollout(rollout(), events=[])
    iris.save_rollout(
        dataclasses.replace(row, phase="progressing", status={"step": 1}), expected_revision=1
    )
    before = snapshot(iris)

    with pytest.raises(
        Conflict, match=r"rollout #\d+ changed meanwhile \(revision 2, expected 1\)"
    ):
        iris.save_rollout(
            dataclasses.replace(row, phase="aborted", status={"step": 0}),
            expected_revision=1,
            routing=canary(weight=0),
            events=[note("rollout.aborted")],
        )
    assert snapshot(iris) == before


def test_saving_an_unknown_rollout_is_not_found(iris: Store) -> None:
    with pytest.raises(NotFound, match="#424242"):
        iris.save_rollout(dataclasses.replace(rollout(), id=424242), expected_revision=1)


def test_a_rollout_cannot_go_back_in_progress_beside_another(iris: Store) -> None:
    ended = started(iris, "aborted")
    started(iris, "progressing")
    before = snapshot(iris)

    with pytest.raises(Conflict, match="another rollout in progress"):
        iris.save_rollout(
            dataclasses.replace(ended, phase="progressing"), expected_revision=ended.revision
        )
    assert snapshot(iris) == before


def test_a_save_with_routing_of_another_model_is_refused(iris: Store) -> None:
    row = iris.start_rollout(rollout(), events=[])
    before = snapshot(iris)

    with pytest.raises(ValidationError, match="routing is for 'wine'"):
        iris.save_rollout(row, expected_revision=1, routing=canary("wine"))
    assert snapshot(iris) == before


# fencing ----------------------------------------------------------------------------


def _taken_over_after_expiry(store: Store) -> None:
    store.acquire_lease(LEASE, "b", now_s=100.0, ttl_s=TTL_S)


def _released(store: Store) -> None:
    store.release_lease(LEASE, "a")


def _released_and_retaken_by_the_same_holder(store: Store) -> None:
    store.release_lease(LEASE, "a")
    store.acquire_lease(LEASE, "a", now_s=20.0, ttl_s=TTL_S)


def _lost_and_won_back(store: Store) -> None:
    store.acquire_lease(LEASE, "b", now_s=100.0, ttl_s=TTL_S)
    store.acquire_lease(LEASE, "a", now_s=200.0, ttl_s=TTL_S)


@pytest.mark.parametrize(
    "lose",
    [
        pytest.param(_taken_over_after_expiry, id="taken over after expiry"),
        pytest.param(_released, id="released"),
        pytest.param(_released_and_retaken_by_the_same_holder, id="released and retaken"),
        pytest.param(_lost_and_won_back, id="lost and won back at a newer epoch"),
    ],
)
def test_a_save_fenced_by_a_stale_lease_writes_nothing(
    iris: Store, lose: Callable[[Store], None]
) -> None:
    lease = iris.acquire_lease(LEASE, "a", now_s=10.0, ttl_s=TTL_S)
    assert lease is not None
    row = iris.start_rollout(rollout(), events=[])
    lose(iris)
    before = snapshot(iris)

    with pytest.raises(Conflict, match="lease 'controller' is no longer held by a"):
        iris.save_rollout(
            dataclasses.replace(row, phase="progressing"),
            expected_revision=1,
            routing=canary(),
            events=[note("rollout.step")],
            lease=(LEASE, "a", lease.epoch),
        )
    assert snapshot(iris) == before


def test_a_save_fenced_by_the_current_lease_goes_through(iris: Store) -> None:
    lease = iris.acquire_lease(LEASE, "a", now_s=10.0, ttl_s=TTL_S)
    assert lease is not None
    row = iris.start_rollout(rollout(), events=[])
    # Renewal keeps the epoch, so the token stays valid.
    assert iris.acquire_lease(LEASE, "a", now_s=12.0, ttl_s=TTL_S) == dataclasses.replace(
        lease, expires_at_s=17.0
    )

    saved = iris.save_rollout(
        dataclasses.replace(row, phase="progressing"),
        expected_revision=1,
        lease=(LEASE, "a", lease.epoch),
    )
    assert saved.revision == 2


def test_a_save_fenced_by_a_lease_that_never_existed_is_refused(iris: Store) -> None:
    row = iris.start_rollout(rollout(), events=[])

    with pytest.raises(Conflict, match="lease 'controller' is no longer held by a"):
        iris.save_rollout(row, expected_revision=1, lease=(LEASE, "a", 1))
    assert iris.get_rollout(row.id or 0) == row


# leases -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Acquire:
    holder: str
    now_s: float
    gets: tuple[str, int, float] | None
    """(holder, epoch, expires_at_s) of the lease returned, or None when refused."""


@dataclasses.dataclass(frozen=True)
class Release:
    holder: str


LEASE_CASES = {
    "a free lease is taken at epoch 1": [Acquire("a", 10.0, ("a", 1, 15.0))],
    "the holder renews and keeps its epoch": [
        Acquire("a", 10.0, ("a", 1, 15.0)),
        Acquire("a", 12.0, ("a", 1, 17.0)),
    ],
    "another holder is refused before expiry": [
        Acquire("a", 10.0, ("a", 1, 15.0)),
        Acquire("b", 14.0, None),
    ],
    "at the expiry instant the lease is still held": [
        Acquire("a", 10.0, ("a", 1, 15.0)),
        Acquire("b", 15.0, None),
    ],
    "after expiry another holder takes it at the next epoch": [
        Acquire("a", 10.0, ("a", 1, 15.0)),
        Acquire("b", 15.5, ("b", 2, 20.5)),
    ],
    "the old holder is refused after the takeover": [
        Acquire("a", 10.0, ("a", 1, 15.0)),
        Acquire("b", 16.0, ("b", 2, 21.0)),
        Acquire("a", 17.0, None),
    ],
    "the old holder wins it back at a newer epoch": [
        Acquire("a", 10.0, ("a", 1, 15.0)),
        Acquire("b", 16.0, ("b", 2, 21.0)),
        Acquire("a", 22.0, ("a", 3, 27.0)),
    ],
    "an expired lease nobody took is renewed at its epoch": [
        Acquire("a", 10.0, ("a", 1, 15.0)),
        Acquire("a", 30.0, ("a", 1, 35.0)),
    ],
    "a released lease is free at once, at the next epoch": [
        Acquire("a", 10.0, ("a", 1, 15.0)),
        Release("a"),
        Acquire("b", 11.0, ("b", 2, 16.0)),
    ],
    "the releaser taking it again starts a new epoch": [
        Acquire("a", 10.0, ("a", 1, 15.0)),
        Release("a"),
        Acquire("a", 11.0, ("a", 2, 16.0)),
    ],
    "only the holder can release": [
        Acquire("a", 10.0, ("a", 1, 15.0)),
        Release("b"),
        Acquire("b", 11.0, None),
    ],
    "releasing a lease nobody holds does nothing": [
        Release("a"),
        Acquire("b", 11.0, ("b", 1, 16.0)),
    ],
}


@pytest.mark.parametrize("steps", list(LEASE_CASES.values()), ids=list(LEASE_CASES))
def test_lease_steps(store: Store, steps: list[Acquire | Release]) -> None:
    holding: Lease | None = None
    for step in steps:
        if isinstance(step, Release):
            store.release_lease(LEASE, step.holder)
            if holding is not None and holding.holder == step.holder:
                holding = None
        else:
            got = store.acquire_lease(LEASE, step.holder, now_s=step.now_s, ttl_s=TTL_S)
            expected = None
            if step.gets is not None:
                holder, epoch, expires_at_s = step.gets
                expected = Lease(LEASE, holder=holder, expires_at_s=expires_at_s, epoch=epoch)
            assert got == expected, step
            holding = got or holding
        assert store.get_lease(LEASE) == holding, step


def test_leases_of_different_names_are_independent(store: Store) -> None:
    assert store.acquire_lease("controller", "a", now_s=1.0, ttl_s=TTL_S) is not None
    assert store.acquire_lease("pruner", "b", now_s=1.0, ttl_s=TTL_S) is not None
    assert store.get_lease("nothing") is None


@pytest.mark.parametrize(
    ("holder", "ttl_s", "match"),
    [
        pytest.param("", TTL_S, "needs a name", id="no holder"),
        pytest.param("a", 0.0, "ttl_s must be positive", id="zero ttl"),
        pytest.param("a", -1.0, "ttl_s must be positive", id="negative ttl"),
    ],
)
def test_acquire_refuses_bad_input(store: Store, holder: str, ttl_s: float, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        store.acquire_lease(LEASE, holder, now_s=1.0, ttl_s=ttl_s)
    assert store.get_lease(LEASE) is None


@pytest.mark.parametrize("sharing", ["one store", "a store per thread"])
def test_racing_holders_never_get_the_same_epoch(
    store: Store, store_url: str, sharing: str
) -> None:
    """Holders race for the lease round by round on one logical clock. Each holder
    sits out its own 4 rounds of every 16, longer than the lease lasts, so the lease
    changes hands every cycle however the threads are scheduled, and the others race
    for it then. Separate stores stand for separate processes."""
    threads, rounds, away_rounds = 4, 64, 4
    stores = [store] * threads
    if sharing == "a store per thread":
        stores = [open_store(store_url) for _ in range(threads)]
    barrier = threading.Barrier(threads)
    grants: list[list[Lease]] = [[] for _ in range(threads)]

    def work(index: int) -> None:
        for round_index in range(rounds):
            barrier.wait(timeout=30)
            if (round_index // away_rounds) % threads == index:
                continue
            now_s = float(round_index + 1)
            lease = stores[index].acquire_lease(LEASE, f"h{index}", now_s=now_s, ttl_s=3.0)
            if lease is not None:
                grants[index].append(lease)

    try:
        assert run_threads(threads, work) == []
    finally:
        for opened in stores:
            if opened is not store:
                opened.close()

    holders_by_epoch: dict[int, set[str]] = {}
    for lease in itertools.chain.from_iterable(grants):
        holders_by_epoch.setdefault(lease.epoch, set()).add(lease.holder)
    assert all(len(holders) == 1 for holders in holders_by_epoch.values()), holders_by_epoch
    # Every change of holder was handed to someone, so no epoch is missing.
    final = store.get_lease(LEASE)
    assert final is not None
    assert sorted(holders_by_epoch) == list(range(1, final.epoch + 1))
    assert final.epoch > 1, "the race never changed hands; it tested nothing"


# set_routing during a rollout -------------------------------------------------------


@pytest.mark.parametrize("phase", ACTIVE_PHASES)
def test_set_routing_is_refused_while_a_rollout_is_in_progress(iris: Store, phase: str) -> None:
    active = started(iris, phase)
    before = snapshot(iris)

    with pytest.raises(Conflict) as refused:
        iris.set_routing(canary(weight=50), note("routing.changed"))

    assert str(refused.value).startswith(
        f"model 'iris' has a rollout in progress (#{active.id}, canary to v2)"
    )
    assert "force" in str(refused.value)
    assert snapshot(iris) == before


@pytest.mark.parametrize("phase", ACTIVE_PHASES)
def test_set_routing_with_force_overrides_a_rollout_in_progress(iris: Store, phase: str) -> None:
    started(iris, phase)

    event = iris.set_routing(canary(weight=50), note("routing.forced"), force=True)

    assert event.id is not None
    assert iris.get_routing("iris") == canary(weight=50)


@pytest.mark.parametrize("phase", TERMINAL_PHASES)
def test_set_routing_is_allowed_after_the_rollout_ended(iris: Store, phase: str) -> None:
    started(iris, phase)

    iris.set_routing(canary(weight=50), note("routing.changed"))

    assert iris.get_routing("iris") == canary(weight=50)


def test_set_routing_of_another_model_is_not_blocked(iris: Store) -> None:
    started(iris, "progressing", model="wine")

    iris.set_routing(canary(weight=50), note("routing.changed"))

    assert iris.get_routing("iris") == canary(weight=50)


# JSON -------------------------------------------------------------------------------

JSON_CASES = {
    "floats keep every digit": {"x": [0.1, 1e-300, 1.7976931348623157e308, -2.5, 1 / 3]},
    "nested lists and dicts": {"a": [[1, [2, [3, []]]], {"b": {"c": {}}}]},
    "None in dicts and lists": {"none": None, "list": [None, 1, None]},
    "big integers stay integers": {"big": 2**63 - 1, "small": -(2**63), "one": 1},
    "text is kept as is": {"ünïcødé ✓": 'tab\there\nnew line \\ "quoted"'},
    "booleans are not numbers": {"t": True, "f": False, "zero": 0},
    "empty": {},
}


@pytest.mark.parametrize("value", list(JSON_CASES.values()), ids=list(JSON_CASES))
def test_spec_and_status_round_trip_unchanged(iris: Store, value: dict[str, Any]) -> None:
    row = iris.start_rollout(dataclasses.replace(rollout(), spec=value, status=value), events=[])
    assert row.id is not None
    stored = iris.get_rollout(row.id)
    assert stored is not None
    assert (stored.spec, stored.status) == (value, value)
    for key, item in value.items():
        assert type(stored.spec[key]) is type(item)

    saved = iris.save_rollout(
        dataclasses.replace(row, status={"nested": value}), expected_revision=1
    )
    again = iris.get_rollout(row.id)
    assert again == saved
    assert again is not None and again.status == {"nested": value}
