"""The controller and the Rollouts service in-process, against a real store.

No HTTP and no gateway: metric buckets are written straight into the store (as a
gateway's flush would), a fake clock stands for time, and each test calls
``Controller.tick`` itself, so every decision can be checked tick by tick. What is
checked is what the store must hold between two ticks: status, routing and events that
always agree, a rollback on the first tick that sees a failing gate, one leader at a
time, a fenced former leader that cannot write, and commands that race a tick without
either write being lost. Each test runs on SQLite (a file) and on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import make_url

from rollwise.controller import LEASE_NAME, Controller
from rollwise.domain import Event, ModelSpec, Role, Routing, VersionSpec
from rollwise.errors import ConfigError, Conflict, RollwiseError
from rollwise.metrics.recorder import VersionWindow
from rollwise.rollout import (
    Command,
    CommandKind,
    Phase,
    RolloutStatus,
    parse_rollout_spec,
    routing_for,
    start,
)
from rollwise.rollouts import Rollouts
from rollwise.store import Store, open_store
from rollwise.store.base import MetricBucketRow, RolloutRow

MODEL = "iris"
STABLE = "v1"
CANDIDATE = "v2"
START_S = 1_800_000_000.0
INTERVAL_S = 1.0
TTL_S = 3.0
SETTLE_S = 1.0
RATE = 1000
"""Requests per second of the synthetic metrics, split by the rollout's weights."""

STEP = "rollout.step"

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


# -- the store ---------------------------------------------------------------------------


def schema_url(database_url: str, schema: str) -> str:
    url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated store with model iris (v1 stable, v2, v3): a SQLite file, or a
    PostgreSQL schema of its own in the session database, dropped afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'rollwise.db'}"
        cleanup: Callable[[], None] = lambda: None  # noqa: E731
    else:
        database_url: str = request.getfixturevalue("postgres_url")
        conninfo = make_url(database_url).render_as_string(hide_password=False)
        schema = f"c_{secrets.token_hex(6)}"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        url = schema_url(database_url, schema)

        def cleanup() -> None:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )

    opened = open_store(url)
    try:
        opened.migrate()
        versions = {v: VersionSpec(name=v, backend="fake") for v in (STABLE, CANDIDATE, "v3")}
        opened.sync_models([ModelSpec(name=MODEL, stable=STABLE, versions=versions)], START_S)
        yield opened
    finally:
        opened.close()
        cleanup()


class FakeClock:
    """The time every controller and command of a test reads; tests move it."""

    def __init__(self, now: float = START_S) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def controller(store: Store, clock: FakeClock, holder: str = "alpha") -> Controller:
    return Controller(
        store,
        clock=clock,
        interval_s=INTERVAL_S,
        lease_ttl_s=TTL_S,
        settle_s=SETTLE_S,
        holder=holder,
    )


def canary(
    weights: Sequence[int], pause_s: float | None, gates: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": MODEL,
        "candidate": CANDIDATE,
        "strategy": "canary",
        "canary": {"weights": list(weights), "pause_s": pause_s},
    }
    if gates:
        spec["gates"] = [dict(g) for g in gates]
    return spec


HEALTHY_GATES = [
    {"metric": "error_rate", "max_increase": 0.05},
    {"metric": "accuracy", "max_decrease": 0.1},
]


# -- metrics, as a gateway would flush them ----------------------------------------------


def window(
    requests: int, *, errors: int = 0, latency_ms: float = 5.0, accuracy: float = 0.9
) -> dict[str, Any]:
    measured = VersionWindow()
    measured.requests = requests
    measured.errors = errors
    measured.latency_ms.record_many(latency_ms, requests)
    measured.latency_sum_ms = latency_ms * requests
    measured.feedback = requests
    measured.correct = round(requests * accuracy)
    return measured.to_payload()


def serve_one_second(
    store: Store,
    clock: FakeClock,
    *,
    candidate_error_rate: float = 0.0,
    rate: int = RATE,
) -> None:
    """Buckets of the second just before ``clock.now``, split by the stored weights."""
    rollout = store.latest_rollout(MODEL)
    assert rollout is not None
    weight = int(rollout.status["weight"])
    start_s = math.floor(clock.now) - 1
    stable_requests = rate * (100 - weight) // 100
    candidate_requests = rate * weight // 100
    rows = [
        MetricBucketRow(
            MODEL, STABLE, Role.SERVED, start_s, 1, "test", window(stable_requests, accuracy=0.9)
        )
    ]
    if candidate_requests:
        errors = round(candidate_requests * candidate_error_rate)
        payload = window(candidate_requests, errors=errors, accuracy=0.95)
        rows.append(MetricBucketRow(MODEL, CANDIDATE, Role.SERVED, start_s, 1, "test", payload))
    store.write_metric_buckets(rows)


# -- what the store holds ----------------------------------------------------------------


def snapshot(store: Store) -> tuple[Any, ...]:
    """Everything a tick may write, to show that one wrote nothing."""
    return (
        store.state_version(),
        store.list_routings(),
        store.list_events(limit=10_000),
        store.list_rollouts(limit=100),
        store.get_lease(LEASE_NAME),
    )


def status_of(row: RolloutRow) -> RolloutStatus:
    return RolloutStatus.from_dict(row.status)


def split(candidate_weight: int) -> Routing:
    """The routing of a canary at ``candidate_weight`` %."""
    weights = {STABLE: 100 - candidate_weight, CANDIDATE: candidate_weight}
    return Routing(MODEL, STABLE, weights, {}, MODEL)


def expected_routing(status: RolloutStatus) -> Routing:
    plan = routing_for(status)
    return Routing(MODEL, plan.stable, dict(plan.weights), dict(plan.mirrors), MODEL)


def assert_routing_matches_status(store: Store) -> RolloutRow:
    """The stored routing is exactly the one the stored status stands for."""
    latest = store.latest_rollout(MODEL)
    assert latest is not None
    assert store.get_routing(MODEL) == expected_routing(status_of(latest)), latest.status
    return latest


def rollout_events(store: Store, after_id: int = 0) -> list[Event]:
    return [
        e
        for e in store.list_events(MODEL, after_id=after_id, limit=10_000)
        if e.kind.startswith("rollout.")
    ]


def step_indices(events: Sequence[Event]) -> list[int]:
    """The (0-based) index of each step entered; events count steps from 1."""
    return [int(e.data["step"]) - 1 for e in events if e.kind == STEP]


# -- a canary, tick by tick --------------------------------------------------------------


def test_a_canary_advances_tick_by_tick_with_status_routing_and_events_in_agreement(
    store: Store, clock: FakeClock
) -> None:
    rollouts = Rollouts(store, clock=clock)
    started = rollouts.apply(canary([10, 30, 50], 2, HEALTHY_GATES), actor="tester")
    steps = len(started.spec.steps)
    assert steps == 10  # (set_weight, pause, analyze) x 3, set_weight 100
    assert_routing_matches_status(store)
    assert store.get_routing(MODEL) == split(10)
    first_events = rollout_events(store)
    # set_weight 10 is instant: the start enters it and the pause after it.
    assert [e.kind for e in first_events] == ["rollout.started", STEP, STEP]
    assert step_indices(first_events) == [0, 1]

    tick = controller(store, clock)
    seen_weights = [10]
    last_event = first_events[-1].id or 0
    for _ in range(40):
        before = store.latest_rollout(MODEL)
        assert before is not None
        state_before = store.state_version()
        clock.advance(INTERVAL_S)
        serve_one_second(store, clock)
        changed = tick.tick()

        after = assert_routing_matches_status(store)
        old, new = status_of(before), status_of(after)
        written = rollout_events(store, last_event)
        last_event = max([last_event, *(e.id or 0 for e in written)])
        # A tick that changed nothing wrote nothing; one that did saved one revision.
        assert after.revision == before.revision + (1 if changed else 0)
        if not changed:
            assert written == []
        # Every step entered in this tick, and only those, has its one step event,
        # written with the status that entered it.
        entered = list(range(old.step_index + 1, min(new.step_index, steps - 1) + 1))
        assert step_indices(written) == entered, (old.step_index, new.step_index, written)
        assert all(e.data["rollout"] == started.id for e in written)
        # The routing changed (one bump of the state counter) exactly when the weight did.
        routing_changed = new.weight != old.weight
        assert store.state_version() == state_before + (1 if routing_changed else 0)
        if routing_changed:
            seen_weights.append(new.weight)
            assert [e for e in written if e.kind == STEP][-1].data["weight"] == new.weight
        assert new.step_index >= old.step_index
        if not new.phase.active:
            break

    final = store.latest_rollout(MODEL)
    assert final is not None and final.phase == Phase.PROMOTED
    assert seen_weights == [10, 30, 50, 100]
    assert store.get_routing(MODEL) == Routing(MODEL, CANDIDATE, {CANDIDATE: 100}, {}, MODEL)
    events = rollout_events(store)
    assert step_indices(events) == list(range(steps))
    assert [e.kind for e in events].count("rollout.analysis_passed") == 3
    assert [e.kind for e in events][-1] == "rollout.promoted"
    assert tick.tick() == []  # an ended rollout is left alone


class PoisonedEvents:
    """The store, except that every rollout save also carries an event that cannot be
    stored; the save then fails after the rollout row and the routing were written
    inside its transaction."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def save_rollout(self, row: RolloutRow, **kwargs: Any) -> RolloutRow:
        poison = Event(MODEL, "test.poison", "cannot be stored", data={"x": object()})
        kwargs["events"] = [*kwargs.get("events", ()), poison]
        return self._store.save_rollout(row, **kwargs)


def test_a_step_change_whose_event_cannot_be_written_leaves_nothing_behind(
    store: Store, clock: FakeClock
) -> None:
    Rollouts(store, clock=clock).apply(canary([10, 50], 1), actor="tester")
    clock.advance(2 * INTERVAL_S)  # the pause is over: the next tick moves to 50 %
    before = snapshot(store)

    broken = Controller(
        PoisonedEvents(store),
        clock=clock,
        interval_s=INTERVAL_S,
        lease_ttl_s=TTL_S,
        settle_s=SETTLE_S,
        holder="alpha",
    )
    # The failure is logged and the tick goes on with the other rollouts; this one
    # changed nothing.
    assert broken.tick() == []
    after = snapshot(store)
    # The lease was taken (its own transaction), but of the step change nothing exists:
    # not the status, not the routing, not one of its events.
    assert after[:4] == before[:4]

    changed = controller(store, clock).tick()
    assert len(changed) == 1
    latest = assert_routing_matches_status(store)
    assert status_of(latest).weight == 50
    assert store.get_routing(MODEL) == split(50)
    assert step_indices(rollout_events(store)) == [0, 1, 2, 3]


# -- automatic rollback ------------------------------------------------------------------


@pytest.mark.parametrize("paused", [False, True], ids=["progressing", "paused"])
def test_a_failing_gate_rolls_back_on_the_first_tick_after_its_buckets_are_stored(
    store: Store, clock: FakeClock, paused: bool
) -> None:
    rollouts = Rollouts(store, clock=clock)
    spec = canary([10, 50], 600, [{"metric": "error_rate", "max_increase": 0.01}])
    started = rollouts.apply(spec, actor="tester")
    tick = controller(store, clock)
    for _ in range(3):
        clock.advance(INTERVAL_S)
        serve_one_second(store, clock)
        tick.tick()
    if paused:
        rollouts.command(MODEL, Command(CommandKind.PAUSE, "tester", "holding"))
    latest = store.latest_rollout(MODEL)
    assert latest is not None and latest.phase in (Phase.PROGRESSING, Phase.PAUSED)
    assert store.get_routing(MODEL) == split(10)

    # One second of the candidate failing half of its requests, then one tick.
    clock.advance(INTERVAL_S)
    serve_one_second(store, clock, candidate_error_rate=0.5)
    changed = tick.tick()

    assert [r.id for r in changed] == [started.id]
    latest = assert_routing_matches_status(store)
    assert latest.phase == Phase.ROLLED_BACK
    assert store.get_routing(MODEL) == Routing(MODEL, STABLE, {STABLE: 100}, {}, MODEL)
    rolled_back = [e for e in rollout_events(store) if e.kind == "rollout.rolled_back"]
    assert len(rolled_back) == 1
    assert rolled_back[0].actor == "controller"
    assert "error_rate" in rolled_back[0].message
    assert status_of(latest).judgement  # the figures it was decided on are kept


# -- the lease: one leader at a time -----------------------------------------------------


def test_two_controllers_on_one_store_take_turns_only_when_the_lease_expires(
    store: Store, clock: FakeClock
) -> None:
    Rollouts(store, clock=clock).apply(canary([10, 20, 30, 40, 50, 60], 1), actor="tester")
    alpha = controller(store, clock, "alpha")
    beta = controller(store, clock, "beta")

    assert alpha.tick() == []  # takes the lease; the first pause is not over yet
    lease = store.get_lease(LEASE_NAME)
    assert lease is not None and lease.holder == "alpha"
    first_epoch = lease.epoch

    for beta_first in (True, False, True):
        clock.advance(INTERVAL_S)  # a pause ends at every tick: there is work to do
        if beta_first:
            before = snapshot(store)
            assert beta.tick() == []
            assert snapshot(store) == before
            assert len(alpha.tick()) == 1
        else:
            assert len(alpha.tick()) == 1
            before = snapshot(store)
            assert beta.tick() == []
            assert snapshot(store) == before
        assert alpha.leader and not beta.leader

    # alpha stops renewing. Until its lease expires beta waits, work or not.
    renewed_until = clock.now + TTL_S
    for at_s in (clock.now + INTERVAL_S, renewed_until):
        clock.now = at_s
        before = snapshot(store)
        assert beta.tick() == []
        assert snapshot(store) == before

    clock.now = renewed_until + INTERVAL_S / 2
    taken = beta.tick()
    assert len(taken) == 1
    assert beta.leader
    lease = store.get_lease(LEASE_NAME)
    assert lease is not None and (lease.holder, lease.epoch) == ("beta", first_epoch + 1)

    # alpha comes back: beta holds the lease now, so alpha only learns it lost it.
    clock.advance(INTERVAL_S)
    before = snapshot(store)
    assert alpha.tick() == []
    assert not alpha.leader
    assert snapshot(store) == before
    assert len(beta.tick()) == 1

    # Every step was entered once, whoever entered it.
    indices = step_indices(rollout_events(store))
    assert indices == list(range(len(indices)))


class TakeoverMidTick:
    """The store as one controller sees it: while that controller judges metrics (after
    reading the rollout, before saving it) its lease expires and ``rival`` takes it."""

    def __init__(self, store: Store, clock: FakeClock, rival: str) -> None:
        self._store = store
        self._clock = clock
        self._rival = rival
        self.armed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def read_metric_buckets(self, *args: Any, **kwargs: Any) -> Any:
        if self.armed:
            self.armed = False
            self._clock.advance(TTL_S + INTERVAL_S)
            taken = self._store.acquire_lease(LEASE_NAME, self._rival, self._clock.now, TTL_S)
            assert taken is not None
        return self._store.read_metric_buckets(*args, **kwargs)


def test_a_controller_that_lost_its_lease_mid_tick_is_fenced_and_writes_nothing(
    store: Store, clock: FakeClock
) -> None:
    Rollouts(store, clock=clock).apply(canary([10, 20, 30], 1), actor="tester")
    seen_by_alpha = TakeoverMidTick(store, clock, "beta")
    alpha = Controller(
        seen_by_alpha,
        clock=clock,
        interval_s=INTERVAL_S,
        lease_ttl_s=TTL_S,
        settle_s=SETTLE_S,
        holder="alpha",
    )
    clock.advance(INTERVAL_S)
    assert len(alpha.tick()) == 1  # alpha leads and moves the canary to 20 %
    old_epoch = alpha.epoch
    row = store.latest_rollout(MODEL)
    assert row is not None and status_of(row).weight == 20

    clock.advance(INTERVAL_S)  # the next pause is over: alpha has a step to write...
    seen_by_alpha.armed = True  # ...but loses the lease to beta while judging it

    assert alpha.tick() == []  # its save was refused (Conflict), and it says so
    lease = store.get_lease(LEASE_NAME)
    assert lease is not None and (lease.holder, lease.epoch) == ("beta", old_epoch + 1)
    after = store.latest_rollout(MODEL)
    assert after == row  # not one field of the rollout changed
    assert status_of(after).weight == 20
    assert store.get_routing(MODEL) == split(20)
    assert step_indices(rollout_events(store)) == [0, 1, 2, 3]

    # The same save, made directly with alpha's old epoch, is refused and writes nothing.
    before = snapshot(store)
    stale = RolloutRow(
        model=row.model,
        phase=row.phase,
        spec=row.spec,
        status={**row.status, "weight": 30, "step_index": 4},
        created_at_s=row.created_at_s,
        updated_at_s=clock.now,
        revision=row.revision,
        id=row.id,
    )
    with pytest.raises(Conflict):
        store.save_rollout(
            stale,
            expected_revision=row.revision,
            routing=split(30),
            events=[Event(MODEL, STEP, "stale", data={"step": 4}, at_s=clock.now)],
            lease=(LEASE_NAME, "alpha", old_epoch),
        )
    assert snapshot(store) == before

    # alpha's next tick finds the lease taken; beta goes on from the stored status.
    assert alpha.tick() == [] and not alpha.leader
    beta = controller(store, clock, "beta")
    assert len(beta.tick()) == 1
    latest = assert_routing_matches_status(store)
    assert status_of(latest).weight == 30
    assert step_indices(rollout_events(store)) == [0, 1, 2, 3, 4, 5]


# -- commands racing ticks ---------------------------------------------------------------


class TickBeforeFirstSave:
    """The store as the Rollouts service sees it: between its read and its first save,
    the controller ticks (and writes a step change)."""

    def __init__(self, store: Store, tick: Callable[[], list[Any]]) -> None:
        self._store = store
        self._tick = tick
        self.ticked: list[Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def save_rollout(self, row: RolloutRow, **kwargs: Any) -> RolloutRow:
        if self.ticked is None:
            self.ticked = self._tick()
        return self._store.save_rollout(row, **kwargs)


def test_a_pause_that_loses_the_race_to_a_tick_retries_and_both_writes_stay(
    store: Store, clock: FakeClock
) -> None:
    Rollouts(store, clock=clock).apply(canary([10, 20, 30], 1), actor="tester")
    ticker = controller(store, clock)
    clock.advance(INTERVAL_S)  # the first pause is over
    racing = TickBeforeFirstSave(store, ticker.tick)
    rollouts = Rollouts(racing, clock=clock)
    row = store.latest_rollout(MODEL)
    assert row is not None

    paused = rollouts.command(MODEL, Command(CommandKind.PAUSE, "ops", "holiday traffic"))

    assert racing.ticked is not None and len(racing.ticked) == 1  # the tick won the race
    assert paused.row.revision == row.revision + 2  # tick, then the retried pause
    latest = assert_routing_matches_status(store)
    assert latest.revision == row.revision + 2
    status = status_of(latest)
    assert status.phase is Phase.PAUSED  # the pause is kept...
    assert status.weight == 20 and status.step_index == 3  # ...and so is the tick's step
    kinds = [(e.kind, e.data.get("step")) for e in rollout_events(store)]
    # Events count steps from 1: the tick entered steps 3 and 4, the pause holds step 4.
    assert kinds[-3:] == [(STEP, 3), (STEP, 4), ("rollout.paused", 4)]

    # Paused, it goes no further however long it waits.
    for _ in range(3):
        clock.advance(INTERVAL_S)
        ticker.tick()
    assert status_of(assert_routing_matches_status(store)).step_index == 3


class CommandMidTick:
    """The store as the controller sees it: after it read the rollout and before it
    saves, a person's command is carried out."""

    def __init__(self, store: Store, command: Callable[[], Any]) -> None:
        self._store = store
        self._command = command
        self.done: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def read_metric_buckets(self, *args: Any, **kwargs: Any) -> Any:
        if self.done is None:
            self.done = self._command()
        return self._store.read_metric_buckets(*args, **kwargs)


def test_a_tick_that_loses_the_race_to_a_pause_writes_nothing_and_keeps_the_pause(
    store: Store, clock: FakeClock
) -> None:
    rollouts = Rollouts(store, clock=clock)
    rollouts.apply(canary([10, 20, 30], 1), actor="tester")
    racing = CommandMidTick(
        store, lambda: rollouts.command(MODEL, Command(CommandKind.PAUSE, "ops", "wait"))
    )
    ticker = Controller(
        racing,
        clock=clock,
        interval_s=INTERVAL_S,
        lease_ttl_s=TTL_S,
        settle_s=SETTLE_S,
        holder="alpha",
    )
    row = store.latest_rollout(MODEL)
    assert row is not None
    clock.advance(INTERVAL_S)  # the first pause is over: the tick would move to 20 %

    assert ticker.tick() == []  # its save met a newer revision and was refused

    assert racing.done is not None
    latest = assert_routing_matches_status(store)
    assert latest.revision == row.revision + 1  # the pause alone
    status = status_of(latest)
    assert status.phase is Phase.PAUSED and status.weight == 10 and status.step_index == 1
    kinds = [e.kind for e in rollout_events(store)]
    assert kinds == ["rollout.started", STEP, STEP, "rollout.paused"]

    # The next tick decides again from the stored status: paused, so nothing moves;
    # after resume the rollout goes on from where it was.
    clock.advance(INTERVAL_S)
    ticker.tick()
    assert status_of(assert_routing_matches_status(store)).step_index == 1
    rollouts.command(MODEL, Command(CommandKind.RESUME, "ops"))
    clock.advance(INTERVAL_S)
    assert len(ticker.tick()) == 1
    latest = assert_routing_matches_status(store)
    assert status_of(latest).weight == 20
    assert step_indices(rollout_events(store)) == [0, 1, 2, 3]


def test_commands_and_ticks_racing_in_threads_lose_no_write(store: Store, clock: FakeClock) -> None:
    rollouts = Rollouts(store, clock=clock)
    started = rollouts.apply(canary(list(range(1, 100)), 1), actor="tester")
    ticker = controller(store, clock)
    ticks_changed: list[int] = []
    commands_done: list[CommandKind] = []
    errors: list[BaseException] = []
    begin = threading.Barrier(2)

    def tick_loop() -> None:
        try:
            begin.wait()
            for _ in range(40):
                clock.advance(INTERVAL_S)
                ticks_changed.append(len(ticker.tick()))
        except BaseException as error:
            errors.append(error)

    def command_loop() -> None:
        try:
            begin.wait()
            for i in range(30):
                kind = CommandKind.PAUSE if i % 2 == 0 else CommandKind.RESUME
                rollouts.command(MODEL, Command(kind, "ops", f"#{i}"))
                commands_done.append(kind)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=tick_loop), threading.Thread(target=command_loop)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(commands_done) == 30
    assert sum(ticks_changed) > 0  # the controller moved the rollout between commands

    latest = assert_routing_matches_status(store)
    # Every save that returned is in the store: revision 1 at start, +1 per save.
    assert latest.revision == 1 + len(commands_done) + sum(ticks_changed)
    events = rollout_events(store)
    assert [e.kind for e in events].count("rollout.paused") == 15
    assert [e.kind for e in events].count("rollout.resumed") == 15
    assert all(e.data["rollout"] in (None, started.id) for e in events)
    indices = step_indices(events)
    assert indices == list(range(len(indices)))
    assert status_of(latest).phase is Phase.PROGRESSING  # the last command was a resume


# -- many models -------------------------------------------------------------------------


def test_every_rollout_in_progress_moves_however_many_models_have_one(
    store: Store, clock: FakeClock
) -> None:
    """The controller moves every rollout in progress: with more models in a rollout
    than a page of ``list_rollouts`` (100), the oldest must not be left behind."""
    names = [f"m{i:03d}" for i in range(101)]
    versions = {v: VersionSpec(name=v, backend="fake") for v in (STABLE, CANDIDATE)}
    store.sync_models([ModelSpec(name=n, stable=STABLE, versions=versions) for n in names], 0.0)
    rollouts = Rollouts(store, clock=clock)
    for name in names:
        rollouts.apply({**canary([10, 50], 1), "model": name}, actor="tester")

    clock.advance(INTERVAL_S)
    changed = controller(store, clock).tick()

    left_behind = []
    for name in names:
        row = store.latest_rollout(name)
        assert row is not None
        if status_of(row).weight != 50:
            left_behind.append(name)
    assert left_behind == []
    assert len(changed) == len(names)


def test_a_stored_rollout_whose_spec_no_longer_parses_does_not_stop_the_others(
    store: Store, clock: FakeClock
) -> None:
    """A rollout stored by an older rollwise, whose spec today's parser refuses
    (``max_duration_s: 0`` meant "the default" before it had to be > 0), must not keep
    the controller from moving every other model's rollout."""
    versions = {v: VersionSpec(name=v, backend="fake") for v in (STABLE, CANDIDATE)}
    store.sync_models([ModelSpec(name="old", stable=STABLE, versions=versions)], 0.0)
    Rollouts(store, clock=clock).apply(canary([10, 50], 1), actor="tester")

    accepted = {
        "model": "old",
        "candidate": CANDIDATE,
        "strategy": "steps",
        "steps": [{"set_weight": 10}, {"analyze": {"max_duration_s": 60}}],
        "gates": [{"metric": "error_rate", "max": 0.5}],
    }
    status = start(parse_rollout_spec(accepted), stable=STABLE, now=clock.now).status
    old_spec = {**accepted, "steps": [{"set_weight": 10}, {"analyze": {"max_duration_s": 0}}]}
    with pytest.raises(ConfigError, match="max_duration_s: must be > 0"):
        parse_rollout_spec(old_spec)
    store.start_rollout(
        RolloutRow(
            model="old",
            phase=status.phase.value,
            spec=old_spec,
            status=status.to_dict(),
            created_at_s=clock.now,
            updated_at_s=clock.now,
        ),
        [],
    )

    clock.advance(INTERVAL_S)  # iris's first pause is over
    # run() logs a tick that raised and goes on; what counts is what was written.
    with contextlib.suppress(RollwiseError):
        controller(store, clock).tick()
    latest = assert_routing_matches_status(store)
    assert status_of(latest).weight == 50, latest.status
