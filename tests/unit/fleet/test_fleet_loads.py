"""The versions a replica should hold, and the plan that gets it there."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollwise.domain import RegisteredVersion, VersionSource, VersionSpec
from rollwise.fleet import LoadPlan, VersionKey, plan_loads


def spec(
    name: str, path: str = "m.skops", source: VersionSource = VersionSource.API
) -> VersionSpec:
    return VersionSpec(name, "sklearn", {"path": path}, source)


def registered(
    model: str, name: str, *, keep: bool = True, path: str = "m.skops"
) -> RegisteredVersion:
    return RegisteredVersion(model=model, spec=spec(name, path), keep_loaded=keep)


A1, A2, B1 = ("iris", "v1"), ("iris", "v2"), ("wine", "v1")


@pytest.mark.parametrize(
    ("desired", "loaded", "expected"),
    [
        pytest.param({}, {}, LoadPlan(), id="nothing to do on an empty replica"),
        pytest.param(
            {A1: spec("v1")}, {A1: spec("v1")}, LoadPlan(), id="already holds what it should"
        ),
        pytest.param(
            {B1: spec("v1"), A1: spec("v1")},
            {},
            LoadPlan(load=[A1, B1]),
            id="a fresh replica loads all",
        ),
        pytest.param(
            {},
            {A2: spec("v2"), A1: spec("v1")},
            LoadPlan(unload=[A1, A2]),
            id="retired versions unload",
        ),
        pytest.param(
            {A1: spec("v1", "new.skops")},
            {A1: spec("v1", "old.skops")},
            LoadPlan(replace=[A1]),
            id="a config version whose spec changed is replaced",
        ),
        pytest.param(
            {A1: spec("v1"), A2: spec("v2", "new.skops")},
            {A2: spec("v2"), B1: spec("v1")},
            LoadPlan(load=[A1], unload=[B1], replace=[A2]),
            id="load, unload and replace at once",
        ),
    ],
)
def test_plan_loads(
    desired: dict[VersionKey, VersionSpec],
    loaded: dict[VersionKey, VersionSpec],
    expected: LoadPlan,
) -> None:
    plan = plan_loads(desired, loaded)
    assert plan == expected
    assert plan.empty is (expected == LoadPlan())


def apply(
    plan: LoadPlan,
    desired: Mapping[VersionKey, VersionSpec],
    loaded: Mapping[VersionKey, VersionSpec],
) -> dict[VersionKey, VersionSpec]:
    held = dict(loaded)
    for key in plan.unload:
        del held[key]
    for key in [*plan.load, *plan.replace]:
        held[key] = desired[key]
    return held


KEYS = st.tuples(st.sampled_from(["iris", "wine"]), st.sampled_from(["v1", "v2", "v3"]))
specs_by_key = st.dictionaries(
    KEYS, st.builds(spec, st.sampled_from(["v1", "v2"]), st.sampled_from(["a", "b"]))
)


@given(specs_by_key, specs_by_key)
def test_applying_the_plan_yields_the_desired_set(
    desired: dict[VersionKey, VersionSpec], loaded: dict[VersionKey, VersionSpec]
) -> None:
    plan = plan_loads(desired, loaded)
    assert apply(plan, desired, loaded) == desired
    # Each key appears once, in sorted order, and a second plan has nothing left to do.
    every = [*plan.load, *plan.unload, *plan.replace]
    assert len(every) == len(set(every))
    assert all(part == sorted(part) for part in (plan.load, plan.unload, plan.replace))
    assert plan_loads(desired, apply(plan, desired, loaded)).empty


@given(specs_by_key)
def test_holding_the_desired_set_needs_no_change(desired: dict[VersionKey, VersionSpec]) -> None:
    assert plan_loads(desired, dict(desired)).empty
