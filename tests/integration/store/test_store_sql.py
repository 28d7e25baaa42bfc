"""The store contract, run alike against a SQLite file and a PostgreSQL schema."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollwise.domain import (
    Event,
    ModelSpec,
    RegisteredVersion,
    Role,
    Routing,
    StickyKey,
    StickyKind,
    VersionSpec,
)
from rollwise.errors import ConfigError, NotFound, StoreError, ValidationError
from rollwise.store import (
    EVENT_ROUTING_INITIALIZED,
    EVENT_ROUTING_RESET,
    FeedbackRecord,
    MetricBucketRow,
    PredictionRecord,
    Store,
    open_store,
)
from rollwise.store.jsontext import spec_fingerprint
from rollwise.store.sql import PRUNE_CHUNK


def model_spec(
    name: str = "iris", versions: tuple[str, ...] = ("v1", "v2"), stable: str = "v1"
) -> ModelSpec:
    return ModelSpec(
        name=name,
        stable=stable,
        versions={
            v: VersionSpec(name=v, backend="sklearn", options={"path": f"models/{name}-{v}.skops"})
            for v in versions
        },
        sticky_key=StickyKey(StickyKind.HEADER, "X-User-Id"),
    )


def canary(model: str = "iris", weight: int = 10) -> Routing:
    return Routing(model=model, stable="v1", weights={"v1": 100 - weight, "v2": weight}, salt=model)


def routing_event(model: str = "iris", at_s: float = 100.0, **data: object) -> Event:
    return Event(model=model, kind="routing.changed", message="canary step", data=data, at_s=at_s)


# migrations ---------------------------------------------------------------------------


def test_migrating_twice_changes_nothing(store: Store) -> None:
    store.sync_models([model_spec()], now_s=1.0)
    store.migrate()
    store.migrate()
    assert store.get_routing("iris") is not None
    assert store.state_version() == 1


def test_a_fresh_store_starts_at_state_version_zero(store: Store) -> None:
    assert store.state_version() == 0
    assert store.list_routings() == []
    assert store.list_events() == []


def test_reopening_the_database_keeps_routing_events_and_counter(
    store: Store, store_url: str
) -> None:
    store.sync_models([model_spec()], now_s=1.0)
    store.set_routing(canary(weight=30), routing_event(at_s=2.0))
    store.close()

    reopened = open_store(store_url)
    try:
        reopened.migrate()
        assert reopened.get_routing("iris") == canary(weight=30)
        assert reopened.state_version() == 2
        assert [e.kind for e in reopened.list_events()] == [
            EVENT_ROUTING_INITIALIZED,
            "routing.changed",
        ]
    finally:
        reopened.close()


# sync_models -------------------------------------------------------------------------


def test_sync_gives_each_new_model_all_traffic_on_its_stable_version(store: Store) -> None:
    events = store.sync_models([model_spec("iris"), model_spec("wine", stable="v2")], now_s=5.0)

    assert [(e.model, e.kind, e.at_s) for e in events] == [
        ("iris", EVENT_ROUTING_INITIALIZED, 5.0),
        ("wine", EVENT_ROUTING_INITIALIZED, 5.0),
    ]
    assert all(e.id is not None for e in events)
    assert "v2" in events[1].message
    assert store.get_routing("wine") == Routing(
        model="wine", stable="v2", weights={"v2": 100}, mirrors={}, salt="wine"
    )
    assert [r.model for r in store.list_routings()] == ["iris", "wine"]
    assert store.state_version() == 2
    assert store.list_events() == events


def test_sync_records_versions_with_backend_and_options(store: Store) -> None:
    store.sync_models([model_spec("iris"), model_spec("wine", versions=("v1",))], now_s=1.0)

    options = {"path": "models/wine-v1.skops"}
    assert store.list_versions("wine") == [
        RegisteredVersion(
            model="wine",
            spec=VersionSpec(name="v1", backend="sklearn", options=options),
            requested=options,
            spec_sha256=spec_fingerprint("sklearn", options),
            registered_at_s=1.0,
        )
    ]
    assert [(v.model, v.name) for v in store.list_versions()] == [
        ("iris", "v1"),
        ("iris", "v2"),
        ("wine", "v1"),
    ]
    assert store.list_versions("nope") == []


def test_sync_again_keeps_routing_that_names_configured_versions(store: Store) -> None:
    store.sync_models([model_spec()], now_s=1.0)
    store.set_routing(canary(weight=30), routing_event())

    assert store.sync_models([model_spec()], now_s=2.0) == []
    assert store.get_routing("iris") == canary(weight=30)
    assert store.state_version() == 2


def test_sync_resets_routing_that_gives_traffic_to_a_version_never_stored(store: Store) -> None:
    store.sync_models([model_spec(versions=("v1", "v2"))], now_s=1.0)
    # set_routing trusts its caller to name versions that exist; this one did not.
    store.set_routing(
        Routing(model="iris", stable="v1", weights={"v1": 90, "v9": 10}, mirrors={"v2": 5}),
        routing_event(),
    )

    events = store.sync_models([model_spec(versions=("v1", "v2"))], now_s=7.0)

    assert len(events) == 1
    reset = events[0]
    assert (reset.kind, reset.model, reset.at_s) == (EVENT_ROUTING_RESET, "iris", 7.0)
    assert "v9" in reset.message and "no longer exists" in reset.message
    assert reset.data["missing_versions"] == ["v9"]
    assert reset.data["previous"]["weights"] == {"v1": 90, "v9": 10}
    assert store.get_routing("iris") == Routing(
        model="iris", stable="v1", weights={"v1": 100}, mirrors={}, salt="iris"
    )
    assert [v.name for v in store.list_versions("iris")] == ["v1", "v2"]
    assert store.state_version() == 3


def test_sync_drops_a_removed_version_without_traffic_from_the_routing(store: Store) -> None:
    store.sync_models([model_spec(versions=("v1", "v2", "v3"))], now_s=1.0)
    store.set_routing(
        Routing("iris", "v1", {"v1": 70, "v2": 30, "v3": 0}, mirrors={"v3": 0}, salt="iris"),
        routing_event(),
    )

    events = store.sync_models([model_spec(versions=("v1", "v2"))], now_s=7.0)

    assert [(e.kind, e.data["missing_versions"]) for e in events] == [(EVENT_ROUTING_RESET, ["v3"])]
    assert "dropped" in events[0].message
    # Every user keeps the version they had: only the idle name goes.
    assert store.get_routing("iris") == Routing(
        model="iris", stable="v1", weights={"v1": 70, "v2": 30}, mirrors={}, salt="iris"
    )
    assert [v.name for v in store.list_versions("iris")] == ["v1", "v2"]


def test_sync_leaves_models_missing_from_the_config_alone(store: Store) -> None:
    store.sync_models([model_spec("iris"), model_spec("wine")], now_s=1.0)

    assert store.sync_models([model_spec("iris")], now_s=2.0) == []
    assert store.get_routing("wine") is not None
    assert len(store.list_versions("wine")) == 2


def test_sync_refuses_a_stable_version_that_is_not_configured(store: Store) -> None:
    bad = ModelSpec(name="iris", stable="v9", versions={"v1": VersionSpec("v1", "sklearn")})

    with pytest.raises(ConfigError, match="v9"):
        store.sync_models([model_spec("wine"), bad], now_s=1.0)
    assert store.list_routings() == []
    assert store.list_versions() == []


# set_routing ------------------------------------------------------------------------


def test_set_routing_replaces_routing_and_returns_its_event(store: Store) -> None:
    store.sync_models([model_spec()], now_s=1.0)

    event = store.set_routing(canary(weight=10), routing_event(at_s=3.5, weight=10))

    assert event.id is not None and event.at_s == 3.5
    assert event.data == {"weight": 10}
    assert store.get_routing("iris") == canary(weight=10)
    assert store.state_version() == 2
    assert store.list_events(after_id=event.id - 1) == [event]


def test_a_failed_set_routing_writes_nothing(store: Store) -> None:
    store.sync_models([model_spec()], now_s=1.0)
    before = (store.get_routing("iris"), store.state_version(), store.list_events())

    # The routing row and the counter are written before the event, whose data cannot
    # be encoded: the failure comes mid-transaction.
    with pytest.raises(StoreError, match="JSON"):
        store.set_routing(canary(weight=50), routing_event(bad=object()))

    assert (store.get_routing("iris"), store.state_version(), store.list_events()) == before
    # The store stays usable after the rollback.
    store.set_routing(canary(weight=50), routing_event())
    assert store.get_routing("iris") == canary(weight=50)


def test_set_routing_of_an_unknown_model_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="ghost"):
        store.set_routing(canary("ghost"), routing_event("ghost"))
    assert store.state_version() == 0
    assert store.list_events() == []


@pytest.mark.parametrize(
    ("routing", "event_model", "match"),
    [
        (Routing("iris", "v1", {"v1": 90, "v2": 20}), "iris", "sum to 110"),
        (Routing("iris", "v1", {"v1": 100}, mirrors={"v2": 150}), "iris", "outside"),
        (canary(), "wine", "event is about model 'wine'"),
    ],
)
def test_set_routing_refuses_inconsistent_input(
    store: Store, routing: Routing, event_model: str, match: str
) -> None:
    store.sync_models([model_spec()], now_s=1.0)

    with pytest.raises(ValidationError, match=match):
        store.set_routing(routing, routing_event(event_model))
    assert store.state_version() == 1


# events -----------------------------------------------------------------------------


def test_events_page_oldest_first_with_after_id_and_limit(store: Store) -> None:
    written = [
        store.add_event(
            Event(
                model="iris" if i % 2 else "wine",
                kind="note",
                message=f"event {i}",
                data={"i": i, "nested": {"b": [1, 2], "a": None}},
                at_s=float(i),
                actor="alice" if i == 3 else "system",
            )
        )
        for i in range(10)
    ]
    ids = [e.id for e in written if e.id is not None]
    assert ids == sorted(ids) and len(set(ids)) == 10

    first = store.list_events(limit=4)
    second = store.list_events(after_id=first[-1].id or 0, limit=4)
    third = store.list_events(after_id=second[-1].id or 0, limit=4)
    assert first + second + third == written
    assert len(third) == 2
    assert store.list_events(after_id=written[-1].id or 0) == []
    assert store.list_events(limit=0) == []
    assert written[3].actor == "alice"
    assert written[3].data == {"i": 3, "nested": {"a": None, "b": [1, 2]}}


def test_the_latest_events_come_oldest_first(store: Store) -> None:
    for i in range(6):
        store.add_event(Event(model="iris", kind="note", message=f"event {i}", at_s=float(i)))
    latest = store.list_events("iris", limit=3, latest=True)
    assert [e.message for e in latest] == ["event 3", "event 4", "event 5"]


def test_events_filter_by_model(store: Store) -> None:
    for i in range(6):
        store.add_event(Event(model=["iris", "wine", "iris"][i % 3], kind="k", message=str(i)))

    iris = store.list_events(model="iris")
    assert [e.message for e in iris] == ["0", "2", "3", "5"]
    assert [e.message for e in store.list_events(model="iris", after_id=iris[1].id or 0)] == [
        "3",
        "5",
    ]
    assert store.list_events(model="nope") == []


# metric buckets ---------------------------------------------------------------------


def bucket(
    start_s: int, version: str = "v1", role: Role = Role.SERVED, replica: str = "r1"
) -> MetricBucketRow:
    return MetricBucketRow(
        model="iris",
        version=version,
        role=role,
        start_s=start_s,
        width_s=10,
        replica=replica,
        payload={"count": start_s, "errors": 0, "latency": {"buckets": [0, 3, 1]}},
    )


def test_metric_buckets_are_read_by_half_open_time_range(store: Store) -> None:
    store.write_metric_buckets([bucket(s) for s in (30, 10, 20, 40)])
    store.write_metric_buckets([bucket(20, replica="r2")])

    rows = store.read_metric_buckets("iris", since_s=10, until_s=40)

    assert [(r.start_s, r.replica) for r in rows] == [
        (10, "r1"),
        (20, "r1"),
        (20, "r2"),
        (30, "r1"),
    ]
    assert rows[0] == bucket(10)
    assert [r.start_s for r in store.read_metric_buckets("iris", since_s=25)] == [30, 40]
    assert store.read_metric_buckets("wine", since_s=0) == []


def test_metric_buckets_filter_by_version_and_role(store: Store) -> None:
    store.write_metric_buckets(
        [bucket(10, "v1"), bucket(10, "v2"), bucket(10, "v2", Role.SHADOW), bucket(20, "v2")]
    )

    v2 = store.read_metric_buckets("iris", since_s=0, version="v2")
    assert [(r.start_s, r.role) for r in v2] == [
        (10, Role.SERVED),
        (10, Role.SHADOW),
        (20, Role.SERVED),
    ]
    shadow = store.read_metric_buckets("iris", since_s=0, role=Role.SHADOW)
    assert [(r.version, r.role) for r in shadow] == [("v2", Role.SHADOW)]
    assert isinstance(shadow[0].role, Role)


def test_prune_metric_buckets_deletes_only_older_rows(store: Store) -> None:
    store.write_metric_buckets([bucket(s) for s in (10, 20, 30)])

    assert store.prune_metric_buckets(older_than_s=30) == 2
    assert [r.start_s for r in store.read_metric_buckets("iris", since_s=0)] == [30]
    assert store.prune_metric_buckets(older_than_s=30) == 0


def test_prune_deletes_more_rows_than_one_chunk(store: Store) -> None:
    count = PRUNE_CHUNK * 2 + 7
    store.write_metric_buckets([bucket(i % 50) for i in range(count)] + [bucket(1_000)])

    assert store.prune_metric_buckets(older_than_s=500) == count
    assert [r.start_s for r in store.read_metric_buckets("iris", since_s=0)] == [1_000]


def test_writing_no_rows_is_a_no_op(store: Store) -> None:
    store.write_metric_buckets([])
    store.log_predictions([])
    assert store.read_metric_buckets("iris", since_s=0) == []


# predictions and feedback -----------------------------------------------------------


def test_predictions_round_trip_served_first(store: Store) -> None:
    store.log_predictions(
        [
            PredictionRecord("req-1", "iris", "v2", Role.SHADOW, [[0.1, 0.9]], 10.0),
            PredictionRecord(
                "req-1", "iris", "v1", Role.SERVED, [[0.8, 0.2]], 1_700_000_000.123456
            ),
            PredictionRecord("req-2", "iris", "v1", Role.SERVED, [{"label": "setosa"}], 11.0),
        ]
    )

    answers = store.get_predictions("req-1")

    assert [(p.version, p.role) for p in answers] == [("v1", Role.SERVED), ("v2", Role.SHADOW)]
    assert answers[0] == PredictionRecord(
        "req-1", "iris", "v1", Role.SERVED, [[0.8, 0.2]], 1_700_000_000.123456
    )
    assert store.get_predictions("req-2")[0].outputs == [{"label": "setosa"}]
    assert store.get_predictions("unknown") == []


def test_batches_keep_text_that_bulk_loading_must_escape(store: Store) -> None:
    awkward = 'tab\there, new\nline, back\\slash, quote" and \\N, ünïcødé ✓'
    store.log_predictions(
        [
            PredictionRecord(
                f"req\t{awkward}", "iris", "v1", Role.SERVED, [awkward, {awkward: 1}], 1.0
            )
        ]
    )
    store.write_metric_buckets(
        [
            MetricBucketRow(
                "iris", "v1", Role.SERVED, 10, 10, f"replica {awkward}", {"note": awkward}
            )
        ]
    )

    (answer,) = store.get_predictions(f"req\t{awkward}")
    assert answer.outputs == [awkward, {awkward: 1}]
    (row,) = store.read_metric_buckets("iris", since_s=0)
    assert (row.replica, row.payload) == (f"replica {awkward}", {"note": awkward})


def test_numpy_outputs_are_stored_as_plain_numbers(store: Store) -> None:
    outputs = [np.array([1.5, 2.5]), np.int64(3), np.float32(0.5)]
    store.log_predictions([PredictionRecord("req-np", "iris", "v1", Role.SERVED, outputs, 1.0)])

    assert store.get_predictions("req-np")[0].outputs == [[1.5, 2.5], 3, 0.5]


def test_prune_predictions_deletes_only_older_rows(store: Store) -> None:
    store.log_predictions(
        [PredictionRecord(f"req-{i}", "iris", "v1", Role.SERVED, [i], float(i)) for i in range(5)]
    )

    assert store.prune_predictions(older_than_s=3.0) == 3
    assert store.get_predictions("req-2") == []
    assert [p.outputs for p in store.get_predictions("req-3")] == [[3]]


def test_prune_feedback_deletes_only_older_labels(store: Store) -> None:
    for i in range(5):
        assert store.record_feedback(FeedbackRecord(f"req-{i}", "iris", i, float(i)))

    assert store.prune_feedback(older_than_s=3.0) == 3
    assert store.get_feedback("req-2") is None
    assert store.get_feedback("req-3") == FeedbackRecord("req-3", "iris", 3, 3.0)


@pytest.mark.parametrize("label", [1, 2.5, "setosa", {"y": [1, 0]}, None, [1, "a"]])
def test_feedback_round_trips_any_json_label(store: Store, label: object) -> None:
    assert store.record_feedback(FeedbackRecord("req-1", "iris", label, 20.0)) is True
    assert store.get_feedback("req-1") == FeedbackRecord("req-1", "iris", label, 20.0)


text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=20)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(label=json_values)
def test_every_json_value_round_trips_unchanged(store: Store, label: Any) -> None:
    request_id = uuid.uuid4().hex
    assert store.record_feedback(FeedbackRecord(request_id, "iris", label, 1.0))
    stored = store.get_feedback(request_id)
    assert stored is not None and stored.label == label


def test_duplicate_feedback_returns_false_and_keeps_the_first_label(store: Store) -> None:
    assert store.record_feedback(FeedbackRecord("req-1", "iris", "setosa", 20.0)) is True
    assert store.record_feedback(FeedbackRecord("req-1", "iris", "virginica", 21.0)) is False
    assert store.get_feedback("req-1") == FeedbackRecord("req-1", "iris", "setosa", 20.0)
    assert store.get_feedback("req-2") is None


# errors -----------------------------------------------------------------------------


def test_unstorable_prediction_outputs_write_nothing(store: Store) -> None:
    good = PredictionRecord("req-1", "iris", "v1", Role.SERVED, [1], 1.0)
    bad = PredictionRecord("req-2", "iris", "v1", Role.SERVED, [object()], 1.0)

    with pytest.raises(StoreError, match="JSON"):
        store.log_predictions([good, bad])
    assert store.get_predictions("req-1") == []


@pytest.mark.postgres
def test_a_batch_the_database_rejects_writes_nothing(new_pg_schema: Callable[[], str]) -> None:
    # PostgreSQL text cannot hold a NUL character; the whole batch must be refused.
    store = open_store(new_pg_schema())
    try:
        store.migrate()
        good = PredictionRecord("req-1", "iris", "v1", Role.SERVED, [1], 1.0)
        bad = PredictionRecord("req-\x00", "iris", "v1", Role.SERVED, [1], 1.0)
        with pytest.raises(StoreError, match="logging 2 predictions failed"):
            store.log_predictions([good, bad])
        assert store.get_predictions("req-1") == []
        store.log_predictions([good])
        assert store.get_predictions("req-1") == [good]
    finally:
        store.close()


def test_a_store_that_was_never_migrated_says_to_migrate(store_url: str) -> None:
    unmigrated = open_store(store_url)
    try:
        with pytest.raises(StoreError, match="migrate"):
            unmigrated.get_routing("iris")
    finally:
        unmigrated.close()


# concurrency ------------------------------------------------------------------------


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


@pytest.mark.parametrize("sharing", ["one store", "a store per thread"])
def test_concurrent_writers_from_threads_all_succeed(
    store: Store, store_url: str, sharing: str
) -> None:
    """Writers at once never see "database is locked": the gateway's worker threads
    share one store; separate stores stand for separate processes on one file."""
    store.sync_models([model_spec()], now_s=1.0)
    threads, rounds = 8, 25
    stores = [store] * threads
    if sharing == "a store per thread":
        stores = [open_store(store_url) for _ in range(threads)]

    def work(index: int) -> None:
        mine = stores[index]
        for i in range(rounds):
            mine.log_predictions(
                [
                    PredictionRecord(f"t{index}-{i}-{k}", "iris", "v1", Role.SERVED, [k], 1.0)
                    for k in range(20)
                ]
            )
            mine.write_metric_buckets([bucket(i, replica=f"r{index}")])
            mine.set_routing(canary(weight=(index + i) % 100), routing_event(at_s=float(i)))
            mine.record_feedback(FeedbackRecord(f"t{index}-{i}-0", "iris", 1, 2.0))
            mine.get_routing("iris")
            mine.state_version()

    try:
        assert run_threads(threads, work) == []
    finally:
        for opened in stores:
            if opened is not store:
                opened.close()

    assert store.state_version() == 1 + threads * rounds
    events = store.list_events(limit=10_000)
    assert len(events) == 1 + threads * rounds
    assert len({e.id for e in events}) == len(events)
    assert len(store.read_metric_buckets("iris", since_s=0)) == threads * rounds
    assert len(store.get_predictions(f"t{threads - 1}-{rounds - 1}-19")) == 1


def test_concurrent_syncs_initialise_routing_once(store_url: str) -> None:
    """Replicas starting together each sync the same config; one event results."""
    stores = [open_store(store_url) for _ in range(4)]
    try:
        stores[0].migrate()
        written: list[list[Event]] = [[] for _ in stores]

        def work(index: int) -> None:
            written[index] = stores[index].sync_models([model_spec()], now_s=1.0)

        assert run_threads(len(stores), work) == []
        assert sorted(len(w) for w in written) == [0, 0, 0, 1]
        assert stores[0].state_version() == 1
    finally:
        for opened in stores:
            opened.close()
