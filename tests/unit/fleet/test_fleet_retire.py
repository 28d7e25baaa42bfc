"""Retiring a version and letting a previous stable version leave memory."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollwise.domain import Routing
from rollwise.fleet import due_for_unload, retire_refusal
from rollwise.rollout.status import Phase, RolloutStatus

NOW = 5_000.0


def routing(
    weights: dict[str, int], stable: str = "v1", mirrors: dict[str, int] | None = None
) -> Routing:
    return Routing("iris", stable, weights, mirrors or {}, salt="iris")


def rollout(
    phase: Phase,
    *,
    stable: str = "v1",
    candidate: str = "v2",
    previous_stable: str | None = None,
    keep_until: float | None = None,
) -> RolloutStatus:
    return RolloutStatus(
        model="iris",
        stable=stable,
        candidate=candidate,
        phase=phase,
        started_s=0.0,
        previous_stable=previous_stable,
        keep_previous_until_s=keep_until,
    )


PROMOTED_HOLDING = rollout(Phase.PROMOTED, previous_stable="v1", keep_until=NOW + 120.0)
PROMOTED_EXPIRED = rollout(Phase.PROMOTED, previous_stable="v1", keep_until=NOW - 1.0)
AFTER_PROMOTION = routing({"v2": 100}, stable="v2")


@pytest.mark.parametrize(
    ("version", "current", "latest", "phrases"),
    [
        pytest.param(
            "v1",
            routing({"v1": 100}),
            None,
            ["'v1'", "'iris'", "stable version", "make another version stable"],
            id="the stable version is refused",
        ),
        pytest.param(
            "v2",
            routing({"v1": 90, "v2": 10}),
            None,
            ["has 10 % of traffic", "route its traffic"],
            id="a version with traffic is refused",
        ),
        pytest.param(
            "v3",
            routing({"v1": 100}, mirrors={"v3": 25}),
            None,
            ["mirrored (25 %", "stop mirroring"],
            id="a mirrored version is refused",
        ),
        pytest.param(
            "v2",
            routing({"v1": 90, "v2": 10}),
            rollout(Phase.PROGRESSING),
            ["candidate in the rollout in progress", "abort"],
            id="the candidate of a rollout in progress is refused for the rollout",
        ),
        pytest.param(
            "v1",
            routing({"v1": 100}),
            rollout(Phase.PAUSED),
            ["stable version in the rollout in progress"],
            id="the stable version of a paused rollout is refused for the rollout",
        ),
        pytest.param(
            "v2",
            routing({"v1": 100}),
            rollout(Phase.PENDING),
            ["candidate in the rollout in progress"],
            id="a pending rollout counts as in progress",
        ),
        pytest.param(
            "v1",
            AFTER_PROMOTION,
            PROMOTED_HOLDING,
            ["rollback target of the last promotion", "until 120 s from now", "keep_previous_s"],
            id="the previous stable is held while a rollback may need it",
        ),
        pytest.param(
            "v1",
            AFTER_PROMOTION,
            rollout(Phase.PROMOTED, previous_stable="v1", keep_until=NOW + 0.2),
            ["until 1 s from now"],
            id="seconds left round up",
        ),
    ],
)
def test_retire_refused(
    version: str, current: Routing, latest: RolloutStatus | None, phrases: list[str]
) -> None:
    reason = retire_refusal("iris", version, current, latest, NOW)
    assert reason is not None
    assert reason.startswith(f"version {version!r} of model 'iris' cannot be retired: ")
    for phrase in phrases:
        assert phrase in reason


@pytest.mark.parametrize(
    ("version", "current", "latest"),
    [
        pytest.param("v3", routing({"v1": 100}), None, id="an idle version"),
        pytest.param("v3", None, None, id="no routing and no rollout"),
        pytest.param(
            "v3", routing({"v1": 90, "v2": 10}), rollout(Phase.PROGRESSING), id="not in the rollout"
        ),
        pytest.param(
            "v2", routing({"v1": 100}), rollout(Phase.ROLLED_BACK), id="a rolled back candidate"
        ),
        pytest.param(
            "v1", AFTER_PROMOTION, PROMOTED_EXPIRED, id="previous stable after keep_previous_s"
        ),
        pytest.param(
            "v1",
            AFTER_PROMOTION,
            rollout(Phase.PROMOTED, previous_stable="v1", keep_until=NOW),
            id="previous stable exactly at keep_previous_until_s",
        ),
        pytest.param(
            "v0", AFTER_PROMOTION, PROMOTED_HOLDING, id="a version older than the rollback target"
        ),
    ],
)
def test_retire_allowed(
    version: str, current: Routing | None, latest: RolloutStatus | None
) -> None:
    assert retire_refusal("iris", version, current, latest, NOW) is None


def test_routing_or_rollout_of_another_model_is_a_bug() -> None:
    wine = Routing("wine", "v1", {"v1": 100})
    with pytest.raises(ValueError, match="wine"):
        retire_refusal("iris", "v1", wine, None, NOW)
    with pytest.raises(ValueError, match="wine"):
        retire_refusal("iris", "v1", None, dataclasses.replace(PROMOTED_HOLDING, model="wine"), NOW)


# -- due_for_unload --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "latest", "expected"),
    [
        pytest.param(AFTER_PROMOTION, PROMOTED_EXPIRED, "v1", id="keep_previous_s has passed"),
        pytest.param(AFTER_PROMOTION, PROMOTED_HOLDING, None, id="still within keep_previous_s"),
        pytest.param(None, PROMOTED_EXPIRED, None, id="no routing: nothing shows it is idle"),
        pytest.param(AFTER_PROMOTION, None, None, id="no rollout"),
        pytest.param(
            routing({"v1": 100}),
            dataclasses.replace(PROMOTED_EXPIRED, phase=Phase.ROLLED_BACK),
            None,
            id="rolled back after the promotion: it is stable again",
        ),
        pytest.param(
            routing({"v1": 100}), PROMOTED_EXPIRED, None, id="routing still anchored on it"
        ),
        pytest.param(
            routing({"v2": 95, "v1": 5}, stable="v2"),
            PROMOTED_EXPIRED,
            None,
            id="it was given traffic again",
        ),
        pytest.param(
            routing({"v2": 100}, stable="v2", mirrors={"v1": 10}),
            PROMOTED_EXPIRED,
            None,
            id="it is mirrored",
        ),
        pytest.param(
            AFTER_PROMOTION,
            dataclasses.replace(PROMOTED_EXPIRED, previous_stable=None),
            None,
            id="no previous stable recorded",
        ),
        pytest.param(
            AFTER_PROMOTION,
            dataclasses.replace(PROMOTED_EXPIRED, keep_previous_until_s=None),
            None,
            id="no keep deadline recorded",
        ),
        pytest.param(
            AFTER_PROMOTION,
            rollout(Phase.PROGRESSING, previous_stable="v1", keep_until=NOW - 1),
            None,
            id="a rollout in progress is not a promotion",
        ),
    ],
)
def test_due_for_unload(
    current: Routing | None, latest: RolloutStatus | None, expected: str | None
) -> None:
    assert due_for_unload(current, latest, NOW) == expected


VERSIONS = st.sampled_from(["v1", "v2", "v3"])


@st.composite
def routings(draw: st.DrawFn) -> Routing:
    weighted = draw(st.lists(VERSIONS, min_size=1, max_size=3, unique=True))
    cuts = sorted(
        draw(st.lists(st.integers(0, 100), min_size=len(weighted) - 1, max_size=len(weighted) - 1))
    )
    bounds = [0, *cuts, 100]
    weights = {v: bounds[i + 1] - bounds[i] for i, v in enumerate(weighted)}
    weights = {v: w for v, w in weights.items() if w > 0}
    stable = max(sorted(weights), key=weights.__getitem__)
    idle = [v for v in ["v1", "v2", "v3"] if v not in weights]
    mirrors = draw(st.dictionaries(st.sampled_from(idle), st.integers(1, 100))) if idle else {}
    return Routing("iris", stable, weights, mirrors, salt="iris")


statuses = st.builds(
    rollout,
    st.sampled_from(list(Phase)),
    stable=VERSIONS,
    candidate=VERSIONS,
    previous_stable=st.none() | VERSIONS,
    keep_until=st.none() | st.floats(NOW - 100, NOW + 100, allow_nan=False),
)


@given(st.none() | routings(), st.none() | statuses, st.floats(NOW - 200, NOW + 200))
def test_a_version_due_for_unload_may_be_retired(
    current: Routing | None, latest: RolloutStatus | None, now_s: float
) -> None:
    # Anything the fleet may drop from memory is free of every claim retire checks
    # (the rollout's own claims aside: a promoted rollout is over).
    version = due_for_unload(current, latest, now_s)
    if version is not None:
        assert current is not None and latest is not None
        assert latest.phase is Phase.PROMOTED
        assert retire_refusal("iris", version, current, latest, now_s) is None


@given(routings(), st.none() | statuses, VERSIONS)
def test_a_version_serving_traffic_is_never_retired(
    current: Routing, latest: RolloutStatus | None, version: str
) -> None:
    if current.weight_of(version) > 0 or version in current.mirrors or version == current.stable:
        assert retire_refusal("iris", version, current, latest, NOW) is not None
