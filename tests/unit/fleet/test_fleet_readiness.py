"""Fleet readiness: live replicas, a version's load state on each, the candidate's verdict."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollwise.domain import Replica, ReplicaVersion, VersionHealth
from rollwise.fleet import (
    CandidateVerdict,
    FleetReadiness,
    candidate_verdict,
    fleet_readiness,
    replica_live,
)

NOW = 1_000.0
TIMEOUT = 10.0
READY, LOADING, FAILED, UNLOADED = (
    VersionHealth.READY,
    VersionHealth.LOADING,
    VersionHealth.FAILED,
    VersionHealth.UNLOADED,
)


def replica(rid: str, age_s: float = 0.0, *, stopped: bool = False) -> Replica:
    return Replica(
        id=rid,
        host="host",
        pid=1,
        started_at_s=0.0,
        last_seen_s=NOW - age_s,
        stopped=stopped,
    )


def state(
    rid: str,
    health: VersionHealth,
    error: str = "",
    *,
    version: str = "v4",
    model: str = "iris",
    at_s: float = 0.0,
) -> ReplicaVersion:
    return ReplicaVersion(rid, model, version, health, error=error, updated_at_s=at_s)


def readiness(replicas: list[Replica], states: list[ReplicaVersion]) -> FleetReadiness:
    return fleet_readiness("iris", "v4", replicas, states, NOW, TIMEOUT)


# -- replica_live ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("member", "live"),
    [
        pytest.param(replica("gw-a"), True, id="a heartbeat just now is live"),
        pytest.param(replica("gw-a", TIMEOUT), True, id="a heartbeat exactly timeout old is live"),
        pytest.param(replica("gw-a", TIMEOUT + 0.1), False, id="an older heartbeat is dead"),
        pytest.param(replica("gw-a", stopped=True), False, id="a replica that said goodbye"),
        pytest.param(replica("gw-a", -5.0), True, id="a heartbeat from a clock ahead is live"),
    ],
)
def test_replica_live(member: Replica, live: bool) -> None:
    assert replica_live(member, NOW, TIMEOUT) is live


# -- fleet_readiness -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("replicas", "states", "expected"),
    [
        pytest.param(
            [replica("gw-a"), replica("gw-b")],
            [state("gw-a", READY), state("gw-b", READY)],
            FleetReadiness("iris", "v4", ("gw-a", "gw-b"), ready=("gw-a", "gw-b")),
            id="ready on every replica",
        ),
        pytest.param(
            [replica("gw-c"), replica("gw-a"), replica("gw-b"), replica("gw-d")],
            [
                state("gw-a", READY),
                state("gw-b", FAILED, "cannot read iris-v4.onnx"),
                state("gw-c", LOADING),
                state("gw-d", UNLOADED),
            ],
            FleetReadiness(
                "iris",
                "v4",
                ("gw-a", "gw-b", "gw-c", "gw-d"),
                ready=("gw-a",),
                loading=("gw-c",),
                failed={"gw-b": "cannot read iris-v4.onnx"},
                missing=("gw-d",),
            ),
            id="each state lands in its own group, ids sorted",
        ),
        pytest.param(
            [replica("gw-a"), replica("gw-b")],
            [state("gw-a", READY)],
            FleetReadiness("iris", "v4", ("gw-a", "gw-b"), ready=("gw-a",), missing=("gw-b",)),
            id="a replica that reports nothing is missing",
        ),
        pytest.param(
            [replica("gw-a"), replica("gw-b", TIMEOUT + 1), replica("gw-c", stopped=True)],
            [state("gw-a", READY), state("gw-b", FAILED, "boom"), state("gw-c", LOADING)],
            FleetReadiness("iris", "v4", ("gw-a",), ready=("gw-a",)),
            id="states of dead and stopped replicas are ignored",
        ),
        pytest.param(
            [replica("gw-a")],
            [state("gw-a", READY, version="v3"), state("gw-a", READY, model="wine")],
            FleetReadiness("iris", "v4", ("gw-a",), missing=("gw-a",)),
            id="other versions and models do not count",
        ),
        pytest.param(
            [replica("gw-a")],
            [state("gw-a", READY, at_s=5.0), state("gw-a", LOADING, at_s=3.0)],
            FleetReadiness("iris", "v4", ("gw-a",), ready=("gw-a",)),
            id="the latest report of a replica counts",
        ),
        pytest.param(
            [replica("gw-a"), replica("gw-a", TIMEOUT + 1)],
            [state("gw-a", READY)],
            FleetReadiness("iris", "v4", ("gw-a",), ready=("gw-a",)),
            id="a replica listed twice counts once",
        ),
        pytest.param(
            [],
            [state("gw-a", READY)],
            FleetReadiness("iris", "v4"),
            id="no replica at all",
        ),
    ],
)
def test_fleet_readiness(
    replicas: list[Replica], states: list[ReplicaVersion], expected: FleetReadiness
) -> None:
    assert readiness(replicas, states) == expected


@pytest.mark.parametrize(
    ("value", "everywhere", "failed_anywhere", "summary", "why_not"),
    [
        pytest.param(
            FleetReadiness("iris", "v4", ("gw-a", "gw-b", "gw-c"), ready=("gw-a", "gw-b", "gw-c")),
            True,
            False,
            "ready on 3/3 replicas",
            "",
            id="ready everywhere",
        ),
        pytest.param(
            FleetReadiness(
                "iris",
                "v4",
                ("gw-a", "gw-b", "gw-c"),
                ready=("gw-a",),
                loading=("gw-c",),
                failed={"gw-b": "cannot read iris-v4.onnx"},
            ),
            False,
            True,
            "ready on 1/3 replicas",
            "not ready on replica gw-b (failed: cannot read iris-v4.onnx); loading on gw-c",
            id="failed on one, loading on another",
        ),
        pytest.param(
            FleetReadiness("iris", "v4", ("gw-a", "gw-b"), loading=("gw-a",), missing=("gw-b",)),
            False,
            False,
            "ready on 0/2 replicas",
            "loading on gw-a; not loaded on gw-b",
            id="loading and missing",
        ),
        pytest.param(
            FleetReadiness("iris", "v4", ("gw-a",), ready=("gw-a",)),
            True,
            False,
            "ready on 1/1 replica",
            "",
            id="one replica says replica, not replicas",
        ),
        pytest.param(
            FleetReadiness("iris", "v4"),
            False,
            False,
            "no live replica",
            "no live replica",
            id="no live replica is never everywhere",
        ),
        pytest.param(
            FleetReadiness("iris", "v4", ("gw-a",), failed={"gw-a": ""}),
            False,
            True,
            "ready on 0/1 replica",
            "not ready on replica gw-a (failed)",
            id="a failure without an error message",
        ),
    ],
)
def test_readiness_properties(
    value: FleetReadiness, everywhere: bool, failed_anywhere: bool, summary: str, why_not: str
) -> None:
    assert value.everywhere is everywhere
    assert value.failed_anywhere is failed_anywhere
    assert value.summary() == summary
    assert value.why_not() == why_not


def test_a_long_multiline_error_is_one_bounded_line() -> None:
    error = "Traceback (most recent call last):\n" + "  frame\n" * 500
    why = FleetReadiness("iris", "v4", ("gw-a",), failed={"gw-a": error}).why_not()
    assert "\n" not in why
    assert len(why) < 400
    assert why.endswith("…)")


# -- candidate_verdict -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "verdict", "phrases"),
    [
        pytest.param(
            FleetReadiness("iris", "v4", ("gw-a", "gw-b"), ready=("gw-a", "gw-b")),
            CandidateVerdict.READY,
            ["'v4'", "'iris'", "ready on 2/2 replicas"],
            id="ready everywhere: READY",
        ),
        pytest.param(
            FleetReadiness(
                "iris",
                "v4",
                ("gw-a", "gw-b", "gw-c"),
                ready=("gw-a",),
                loading=("gw-c",),
                failed={"gw-b": "cannot read iris-v4.onnx"},
            ),
            CandidateVerdict.FAILED,
            ["failed to load", "replica gw-b", "cannot read iris-v4.onnx"],
            id="a failure outweighs loading: FAILED naming replica and error",
        ),
        pytest.param(
            FleetReadiness(
                "iris", "v4", ("gw-a", "gw-b"), failed={"gw-a": "no file", "gw-b": "bad onnx"}
            ),
            CandidateVerdict.FAILED,
            ["replica gw-a: no file", "replica gw-b: bad onnx"],
            id="every failed replica is named",
        ),
        pytest.param(
            FleetReadiness("iris", "v4", ("gw-a", "gw-b"), ready=("gw-a",), loading=("gw-b",)),
            CandidateVerdict.WAIT,
            ["waiting", "ready on 1/2 replicas", "loading on gw-b"],
            id="still loading on one replica: WAIT",
        ),
        pytest.param(
            FleetReadiness("iris", "v4", ("gw-a", "gw-b"), ready=("gw-a",), missing=("gw-b",)),
            CandidateVerdict.WAIT,
            ["not loaded on gw-b"],
            id="a replica that has not picked it up yet: WAIT",
        ),
        pytest.param(
            FleetReadiness("iris", "v4"),
            CandidateVerdict.WAIT,
            ["no live replica"],
            id="no live replica: WAIT, never READY",
        ),
    ],
)
def test_candidate_verdict(
    value: FleetReadiness, verdict: CandidateVerdict, phrases: list[str]
) -> None:
    got, reason = candidate_verdict(value)
    assert got is verdict
    for phrase in phrases:
        assert phrase in reason


def test_candidate_verdict_is_the_same_enum() -> None:
    assert CandidateVerdict is CandidateVerdict


# -- invariants ------------------------------------------------------------------------------

IDS = st.sampled_from(["gw-a", "gw-b", "gw-c", "gw-d", "gw-e"])
replicas_st = st.lists(
    st.builds(
        replica,
        IDS,
        st.floats(min_value=-5, max_value=3 * TIMEOUT, allow_nan=False),
        stopped=st.booleans(),
    ),
    max_size=8,
)
states_st = st.lists(
    st.builds(
        state,
        IDS,
        st.sampled_from(list(VersionHealth)),
        st.sampled_from(["", "boom"]),
        version=st.sampled_from(["v4", "v5"]),
        at_s=st.floats(min_value=0, max_value=10, allow_nan=False),
    ),
    max_size=12,
)


@given(replicas_st, states_st)
def test_every_live_replica_is_in_exactly_one_group(
    replicas: list[Replica], states: list[ReplicaVersion]
) -> None:
    value = readiness(replicas, states)
    groups = [*value.ready, *value.loading, *value.failed, *value.missing]
    assert sorted(groups) == list(value.live)
    assert list(value.live) == sorted({r.id for r in replicas if replica_live(r, NOW, TIMEOUT)})


@given(replicas_st, states_st)
def test_everywhere_iff_ready_covers_a_non_empty_live_set(
    replicas: list[Replica], states: list[ReplicaVersion]
) -> None:
    value = readiness(replicas, states)
    assert value.everywhere == (bool(value.live) and set(value.ready) == set(value.live))


@given(replicas_st, states_st)
def test_the_verdict_follows_readiness(
    replicas: list[Replica], states: list[ReplicaVersion]
) -> None:
    value = readiness(replicas, states)
    verdict, reason = candidate_verdict(value)
    assert reason
    if value.failed_anywhere:
        assert verdict is CandidateVerdict.FAILED
    elif value.everywhere:
        assert verdict is CandidateVerdict.READY
    else:
        assert verdict is CandidateVerdict.WAIT
    # Only a replica that is live can hold a candidate back or vouch for it.
    assert (verdict is CandidateVerdict.READY) <= bool(value.live)
