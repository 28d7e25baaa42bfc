"""The catalog in the store, alike on SQLite and PostgreSQL: models and versions that the
config manages (``sync_models``) beside those the control API registers, retires and
parks, with one rule between them: a registered version is immutable, and a version
that serves traffic is never deleted from under it.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from rollwise.domain import (
    Event,
    ModelSpec,
    RegisteredVersion,
    Replica,
    ReplicaVersion,
    Routing,
    StickyKey,
    StickyKind,
    VersionHealth,
    VersionSource,
    VersionSpec,
)
from rollwise.errors import ConfigError, Conflict, NotFound, ValidationError
from rollwise.store import RolloutRow, Store, open_store
from rollwise.store.jsontext import fingerprint, spec_fingerprint

API = VersionSource.API
CONFIG = VersionSource.CONFIG


def config_model(
    name: str = "iris", versions: tuple[str, ...] = ("v1", "v2"), stable: str = "v1", **kw: Any
) -> ModelSpec:
    return ModelSpec(
        name=name,
        stable=stable,
        versions={
            v: VersionSpec(name=v, backend="sklearn", options={"path": f"{name}-{v}.skops"})
            for v in versions
        },
        **kw,
    )


def api_version(
    name: str = "v3", model: str = "iris", options: Mapping[str, Any] | None = None, **kw: Any
) -> RegisteredVersion:
    opts = {"path": f"{model}-{name}.onnx"} if options is None else dict(options)
    values: dict[str, Any] = {
        "requested": opts,
        "spec_sha256": spec_fingerprint("onnx", opts),
        "registered_at_s": 5.0,
    }
    values.update(kw)
    return RegisteredVersion(
        model=model, spec=VersionSpec(name=name, backend="onnx", options=opts, source=API), **values
    )


def note(kind: str, model: str = "iris", at_s: float = 5.0) -> Event:
    return Event(model=model, kind=kind, message=kind, at_s=at_s, actor="alice")


def snapshot(store: Store) -> tuple[Any, ...]:
    """Everything a catalog write may change, to show that a refused one changed nothing."""
    return (
        store.state_version(),
        store.list_models(),
        store.list_versions(),
        store.list_routings(),
        store.list_events(limit=1_000),
        store.list_replica_versions(),
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


def keep_loaded(store: Store, model: str, name: str) -> bool:
    stored = store.get_version(model, name)
    assert stored is not None
    return stored.keep_loaded


def never_refuse(_routing: Routing | None, _latest: RolloutRow | None) -> str | None:
    return None


def report(store: Store, replica: str, *versions: tuple[str, str]) -> None:
    store.heartbeat(Replica(replica, "host", 1, 1.0, 2.0))
    store.report_versions(
        replica,
        [ReplicaVersion(replica, m, v, VersionHealth.READY, updated_at_s=2.0) for m, v in versions],
    )


@pytest.fixture
def iris(store: Store) -> Store:
    """The store with config models iris (v1, v2) and wine (v1, v2), 100 % on v1."""
    store.sync_models([config_model("iris"), config_model("wine")], now_s=1.0)
    return store


# fingerprints -------------------------------------------------------------------------


def test_a_fingerprint_ignores_key_order_but_not_values() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert spec_fingerprint("onnx", {"path": "m"}) != spec_fingerprint("sklearn", {"path": "m"})
    assert len(spec_fingerprint("onnx", {})) == 64


# list_models --------------------------------------------------------------------------


def test_list_models_gives_config_and_api_versions_with_the_models_settings(
    iris: Store,
) -> None:
    iris.sync_models(
        [
            config_model(
                "iris",
                sticky_key=StickyKey(StickyKind.HEADER, "X-User-Id"),
                salt="pepper",
                agreement_tolerance=0.01,
                task="regression",
            ),
            config_model("wine", sticky_key=StickyKey(StickyKind.COOKIE, "UID")),
        ],
        now_s=2.0,
    )
    iris.register_version(api_version(), note("version.registered"))

    models = {m.name: m for m in iris.list_models()}

    assert list(models) == ["iris", "wine"]
    assert models["iris"] == ModelSpec(
        name="iris",
        stable="v1",
        versions={
            "v1": VersionSpec("v1", "sklearn", {"path": "iris-v1.skops"}, CONFIG),
            "v2": VersionSpec("v2", "sklearn", {"path": "iris-v2.skops"}, CONFIG),
            "v3": VersionSpec("v3", "onnx", {"path": "iris-v3.onnx"}, API),
        },
        # A header's name is case-insensitive: kept lower-cased, as the config parses it.
        sticky_key=StickyKey(StickyKind.HEADER, "x-user-id"),
        salt="pepper",
        task="regression",
        agreement_tolerance=0.01,
        source=CONFIG,
    )
    assert models["wine"].sticky_key == StickyKey(StickyKind.COOKIE, "UID")
    assert (models["wine"].salt, models["wine"].agreement_tolerance) == ("", 1e-6)


# register_version ---------------------------------------------------------------------


def test_registering_a_new_version_stores_it_whole_with_its_event(iris: Store) -> None:
    before = iris.state_version()
    version = api_version(
        options={"uri": "models:/iris/3"},
        requested={"uri": "models:/iris@challenger"},
        artifact_sha256="ab" * 32,
        resolved={"alias": "challenger", "version": "3"},
        keep_loaded=False,
    )

    stored, written = iris.register_version(version, note("version.registered"))

    assert written is True
    assert stored == version
    assert iris.get_version("iris", "v3") == version
    assert iris.list_versions("iris")[-1] == version
    assert iris.state_version() == before + 1
    assert [e.kind for e in iris.list_events("iris")][-1] == "version.registered"


def test_registering_fills_in_the_fingerprint_and_the_time_left_out(iris: Store) -> None:
    bare = RegisteredVersion(model="iris", spec=VersionSpec("v3", "onnx", {"path": "m.onnx"}, API))

    stored, _ = iris.register_version(bare, note("version.registered", at_s=42.0))

    assert stored.requested == {"path": "m.onnx"}
    assert stored.spec_sha256 == spec_fingerprint("onnx", {"path": "m.onnx"})
    assert stored.registered_at_s == 42.0
    # The runtime's own fingerprint of the same spec matches: a retry is a no-op.
    assert iris.register_version(api_version(options={"path": "m.onnx"}), note("again")) == (
        stored,
        False,
    )


REGISTER_REFUSALS: dict[str, tuple[RegisteredVersion, type[Exception], str]] = {
    "another spec under a registered name is refused as immutable": (
        api_version(options={"path": "other.onnx"}),
        Conflict,
        r"version 'v3' of model 'iris' is registered already.*immutable once registered"
        r".*under a new name",
    ),
    "another spec under a config version's name says the config manages it": (
        api_version("v2"),
        Conflict,
        r"version 'v2' of model 'iris' is managed by the config.*immutable.*new name",
    ),
    "a version of an unknown model is not found, naming the models": (
        api_version(model="ghost"),
        NotFound,
        r"unknown model 'ghost' \(models: iris, wine\)",
    ),
}


@pytest.mark.parametrize(
    ("version", "error", "match"), list(REGISTER_REFUSALS.values()), ids=list(REGISTER_REFUSALS)
)
def test_a_refused_registration_writes_nothing(
    iris: Store, version: RegisteredVersion, error: type[Exception], match: str
) -> None:
    iris.register_version(api_version(), note("version.registered"))
    before = snapshot(iris)

    with pytest.raises(error, match=match):
        iris.register_version(version, note("version.registered", model=version.model))

    assert snapshot(iris) == before


def test_registering_the_same_spec_again_changes_nothing(iris: Store) -> None:
    first, _ = iris.register_version(api_version(), note("version.registered"))
    before = snapshot(iris)

    # A later registration time or other bookkeeping does not make it another spec.
    again = dataclasses.replace(api_version(), registered_at_s=99.0)
    assert iris.register_version(again, note("version.registered")) == (first, False)

    assert snapshot(iris) == before


def test_replicas_registering_one_version_at_once_register_it_once(
    iris: Store, store_url: str
) -> None:
    stores = [open_store(store_url) for _ in range(4)]
    outcomes: list[bool | None] = [None for _ in stores]

    def work(index: int) -> None:
        outcomes[index] = stores[index].register_version(api_version(), note("registered"))[1]

    try:
        assert run_threads(len(stores), work) == []
    finally:
        for opened in stores:
            opened.close()

    assert sorted(o is True for o in outcomes) == [False, False, False, True]
    assert [e.kind for e in iris.list_events("iris")].count("registered") == 1


# retire_version -----------------------------------------------------------------------


def refuse_always(_routing: Routing | None, _latest: RolloutRow | None) -> str | None:
    return "v3 is still needed for reasons"


RETIRE_REFUSALS: dict[str, tuple[str, str, Callable[..., str | None], type[Exception], str]] = {
    "a config-managed version is refused: the config manages it": (
        "iris",
        "v2",
        never_refuse,
        Conflict,
        r"^version 'v2' of model 'iris' is managed by the config: remove it from the config$",
    ),
    "the refusal's reason refuses it": (
        "iris",
        "v3",
        refuse_always,
        Conflict,
        r"^v3 is still needed for reasons$",
    ),
    "an unknown version is not found, naming the versions": (
        "iris",
        "v9",
        never_refuse,
        NotFound,
        r"model 'iris' has no version 'v9' \(versions: v1, v2, v3\)",
    ),
    "a version of an unknown model is not found": (
        "ghost",
        "v3",
        never_refuse,
        NotFound,
        r"unknown model 'ghost'",
    ),
}


@pytest.mark.parametrize(
    ("model", "name", "refusal", "error", "match"),
    list(RETIRE_REFUSALS.values()),
    ids=list(RETIRE_REFUSALS),
)
def test_a_refused_retirement_writes_nothing(
    iris: Store,
    model: str,
    name: str,
    refusal: Callable[..., str | None],
    error: type[Exception],
    match: str,
) -> None:
    iris.register_version(api_version(), note("version.registered"))
    report(iris, "r1", ("iris", "v2"), ("iris", "v3"))
    before = snapshot(iris)

    with pytest.raises(error, match=match):
        iris.retire_version(model, name, note("version.retired", model=model), refusal)

    assert snapshot(iris) == before


def test_retiring_deletes_the_version_and_its_load_states_with_its_event(iris: Store) -> None:
    iris.register_version(api_version(), note("version.registered"))
    iris.register_version(api_version("v4"), note("version.registered"))
    report(iris, "r1", ("iris", "v1"), ("iris", "v3"), ("iris", "v4"))
    report(iris, "r2", ("iris", "v3"), ("wine", "v3"))
    rollout = iris.start_rollout(
        RolloutRow("iris", "promoted", {"candidate": "v3"}, {}, 6.0, 6.0), events=[]
    )
    asked: list[tuple[Routing | None, RolloutRow | None]] = []

    def refusal(routing: Routing | None, latest: RolloutRow | None) -> str | None:
        asked.append((routing, latest))
        return None

    before = iris.state_version()

    retired = iris.retire_version("iris", "v3", note("version.retired", at_s=7.0), refusal)

    assert retired == api_version()
    assert asked == [(iris.get_routing("iris"), rollout)]
    assert iris.get_version("iris", "v3") is None
    assert [v.name for v in iris.list_versions("iris")] == ["v1", "v2", "v4"]
    assert [(s.replica, s.model, s.version) for s in iris.list_replica_versions()] == [
        ("r1", "iris", "v1"),
        ("r1", "iris", "v4"),
        # Another model's version of the same name is another version.
        ("r2", "wine", "v3"),
    ]
    assert iris.state_version() == before + 1
    assert iris.list_events("iris")[-1].kind == "version.retired"


# set_keep_loaded ----------------------------------------------------------------------


def test_keep_loaded_flips_with_an_event_and_a_bump_only_when_it_changes(iris: Store) -> None:
    before = iris.state_version()

    assert iris.set_keep_loaded("iris", "v2", False, note("version.parked")) is True
    assert keep_loaded(iris, "iris", "v2") is False
    assert keep_loaded(iris, "iris", "v1") is True
    assert iris.state_version() == before + 1
    unchanged = snapshot(iris)

    assert iris.set_keep_loaded("iris", "v2", False, note("version.parked")) is False
    assert snapshot(iris) == unchanged

    assert iris.set_keep_loaded("iris", "v2", True, note("version.unparked")) is True
    assert keep_loaded(iris, "iris", "v2") is True
    assert [e.kind for e in iris.list_events("iris")][-2:] == ["version.parked", "version.unparked"]
    assert iris.state_version() == before + 2


def test_keep_loaded_of_an_unknown_version_is_not_found(iris: Store) -> None:
    with pytest.raises(NotFound, match="v9"):
        iris.set_keep_loaded("iris", "v9", False, note("version.parked"))


def test_a_config_resync_keeps_a_parked_version_parked(iris: Store) -> None:
    iris.set_keep_loaded("iris", "v2", False, note("version.parked"))

    iris.sync_models([config_model("iris"), config_model("wine")], now_s=9.0)

    assert keep_loaded(iris, "iris", "v2") is False


# create_model -------------------------------------------------------------------------


def new_model(**kw: Any) -> ModelSpec:
    values: dict[str, Any] = {"name": "digits", "stable": "v1", "versions": {}, "salt": "s"}
    values.update(kw)
    return ModelSpec(**values)


def digits_versions() -> list[RegisteredVersion]:
    return [api_version("v1", "digits"), api_version("v2", "digits")]


def test_creating_a_model_stores_it_with_routing_on_its_stable_version(iris: Store) -> None:
    before = iris.state_version()
    # A config-looking spec still makes an API-managed version: the API created it.
    versions = [
        api_version("v1", "digits"),
        dataclasses.replace(
            api_version("v2", "digits"), spec=VersionSpec("v2", "onnx", {"path": "digits-v2.onnx"})
        ),
    ]

    assert iris.create_model(new_model(), versions, note("model.created", "digits"), 8.0)

    (digits,) = [m for m in iris.list_models() if m.name == "digits"]
    assert digits.source is API
    assert {name: spec.source for name, spec in digits.versions.items()} == {"v1": API, "v2": API}
    assert iris.get_routing("digits") == Routing("digits", "v1", {"v1": 100}, {}, salt="s")
    assert iris.state_version() == before + 1
    assert iris.list_events("digits")[-1].kind == "model.created"


def test_creating_a_model_without_salt_salts_its_routing_with_its_name(iris: Store) -> None:
    iris.create_model(new_model(salt=""), digits_versions(), note("created", "digits"), 8.0)

    assert iris.get_routing("digits") == Routing("digits", "v1", {"v1": 100}, {}, salt="digits")


def test_creating_an_identical_model_again_writes_nothing(iris: Store) -> None:
    iris.create_model(new_model(), digits_versions(), note("model.created", "digits"), 8.0)
    before = snapshot(iris)

    # Naming fewer of its versions is still the same model.
    again = digits_versions()[:1]
    assert not iris.create_model(new_model(), again, note("model.created", "digits"), 9.0)

    assert snapshot(iris) == before


CREATE_CONFLICTS: dict[str, tuple[ModelSpec, list[RegisteredVersion], str]] = {
    "another stable version": (
        new_model(stable="v2"),
        digits_versions(),
        r"its stable version is 'v1', not 'v2'",
    ),
    "another salt": (new_model(salt="t"), digits_versions(), r"its salt is 's', not 't'"),
    "another sticky key": (
        new_model(sticky_key=StickyKey(StickyKind.FIELD, "user")),
        digits_versions(),
        r"its sticky key is none, not 'field:user'",
    ),
    "another task": (new_model(task="regression"), digits_versions(), r"its task is"),
    "another tolerance": (
        new_model(agreement_tolerance=0.5),
        digits_versions(),
        r"its agreement tolerance is 1e-06, not 0.5",
    ),
    "a version with another spec": (
        new_model(),
        [api_version("v1", "digits", {"path": "else.onnx"})],
        r"its version 'v1' has another spec",
    ),
    "a version it does not have": (
        new_model(),
        [*digits_versions(), api_version("v3", "digits")],
        r"it has no version 'v3'",
    ),
}


@pytest.mark.parametrize(
    ("model", "versions", "match"), list(CREATE_CONFLICTS.values()), ids=list(CREATE_CONFLICTS)
)
def test_creating_a_model_that_exists_otherwise_is_a_conflict_naming_the_difference(
    iris: Store, model: ModelSpec, versions: list[RegisteredVersion], match: str
) -> None:
    iris.create_model(new_model(), digits_versions(), note("model.created", "digits"), 8.0)
    before = snapshot(iris)

    with pytest.raises(Conflict, match=r"model 'digits' exists already and differs: .*" + match):
        iris.create_model(model, versions, note("model.created", "digits"), 9.0)

    assert snapshot(iris) == before


def test_a_model_whose_stable_version_is_not_given_is_refused(iris: Store) -> None:
    before = snapshot(iris)

    with pytest.raises(ValidationError, match=r"stable version 'v9' is not among .*v1, v2"):
        iris.create_model(new_model(stable="v9"), digits_versions(), note("c", "digits"), 8.0)

    assert snapshot(iris) == before


# sync_models with the control API beside it --------------------------------------------


def serving_stable(store: Store) -> None:
    store.set_routing(Routing("iris", "v2", {"v2": 100}, salt="iris"), note("routing.changed"))


def serving_weight(store: Store) -> None:
    store.set_routing(
        Routing("iris", "v1", {"v1": 90, "v2": 10}, salt="iris"), note("routing.changed")
    )


def serving_mirror(store: Store) -> None:
    store.set_routing(
        Routing("iris", "v1", {"v1": 100}, {"v2": 20}, salt="iris"), note("routing.changed")
    )


def serving_rollout(store: Store) -> None:
    store.start_rollout(RolloutRow("iris", "pending", {"candidate": "v2"}, {}, 3.0, 3.0), [])


SERVING: dict[str, tuple[Callable[[Store], None], str]] = {
    "as the stable version": (serving_stable, r"\(stable / 100 %\)"),
    "with a weight": (serving_weight, r"\(10 %\)"),
    "as a mirror": (serving_mirror, r"\(mirrored\)"),
    "as the candidate of a rollout in progress": (serving_rollout, r"\(in rollout #\d+\)"),
}


@pytest.mark.parametrize(("serve", "how"), list(SERVING.values()), ids=list(SERVING))
def test_sync_refuses_to_remove_a_config_version_that_still_serves(
    iris: Store, serve: Callable[[Store], None], how: str
) -> None:
    serve(iris)
    before = snapshot(iris)

    # The rest of this config (a new version, a new model) is refused with it.
    with pytest.raises(
        ConfigError,
        match=r"^version 'v2' of model 'iris' was removed from the config but still serves "
        + how
        + ": route it away first$",
    ):
        iris.sync_models(
            [config_model("new"), config_model("iris", versions=("v1", "v4"))], now_s=9.0
        )

    assert snapshot(iris) == before


def test_sync_removes_a_config_version_that_serves_nobody(iris: Store) -> None:
    iris.start_rollout(RolloutRow("iris", "rolled_back", {"candidate": "v2"}, {}, 3.0, 3.0), [])
    report(iris, "r1", ("iris", "v1"), ("iris", "v2"))
    before = (iris.state_version(), iris.list_events(limit=1_000), iris.list_routings())

    assert iris.sync_models([config_model("iris", versions=("v1",))], now_s=9.0) == []

    assert [v.name for v in iris.list_versions("iris")] == ["v1"]
    assert [(s.replica, s.version) for s in iris.list_replica_versions("iris")] == [("r1", "v1")]
    # Replicas learn of the catalog change through the counter; routing is untouched.
    assert iris.state_version() == before[0] + 1
    assert (iris.list_events(limit=1_000), iris.list_routings()) == before[1:]


def test_sync_never_touches_api_versions(iris: Store) -> None:
    registered, _ = iris.register_version(api_version(), note("version.registered"))
    iris.set_routing(
        Routing("iris", "v1", {"v1": 80, "v3": 20}, salt="iris"), note("routing.changed")
    )

    assert iris.sync_models([config_model("iris", versions=("v1", "v2"))], now_s=9.0) == []

    assert iris.get_version("iris", "v3") == registered
    assert iris.get_routing("iris") == Routing("iris", "v1", {"v1": 80, "v3": 20}, salt="iris")


def test_sync_refuses_a_config_version_named_like_an_api_version(iris: Store) -> None:
    iris.register_version(api_version(), note("version.registered"))
    before = snapshot(iris)

    with pytest.raises(
        ConfigError,
        match=r"model 'iris': version 'v3' in the config is already registered through the "
        r"control API; choose a new name",
    ):
        iris.sync_models([config_model("iris", versions=("v1", "v2", "v3"))], now_s=9.0)

    assert snapshot(iris) == before


def test_sync_updates_a_changed_config_version_and_bumps_once(iris: Store) -> None:
    before = iris.state_version()
    changed = config_model("iris")
    changed = dataclasses.replace(
        changed,
        versions={**changed.versions, "v2": VersionSpec("v2", "onnx", {"path": "new.onnx"})},
    )

    assert iris.sync_models([changed, config_model("wine")], now_s=9.0) == []

    stored = iris.get_version("iris", "v2")
    assert stored is not None
    assert (stored.spec.backend, stored.spec.options, stored.requested) == (
        "onnx",
        {"path": "new.onnx"},
        {"path": "new.onnx"},
    )
    assert stored.spec_sha256 == spec_fingerprint("onnx", {"path": "new.onnx"})
    assert stored.registered_at_s == 9.0
    assert iris.state_version() == before + 1


def test_sync_records_a_changed_model_setting_and_bumps_once(iris: Store) -> None:
    before = iris.state_version()

    iris.sync_models([config_model("iris", salt="new"), config_model("wine")], now_s=9.0)

    assert [m.salt for m in iris.list_models()] == ["new", ""]
    assert iris.state_version() == before + 1
