"""Routing tables: bucket ranges, stickiness when weights change, unready versions."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollwise.domain import BUCKETS, ModelSpec, Routing, StickyKey, StickyKind, VersionSpec
from rollwise.errors import NotFound, ValidationError
from rollwise.routing import bucket_of, build_table, check_routing, parse_assignments

STICKY = StickyKey(StickyKind.HEADER, "x-user-id")


def model(*versions: str, stable: str = "v1") -> ModelSpec:
    return ModelSpec(
        name="iris",
        stable=stable,
        versions={v: VersionSpec(v, "fake") for v in versions},
        sticky_key=STICKY,
    )


IRIS = model("v1", "v2", "v3")


def routing(
    weights: dict[str, int], stable: str = "v1", mirrors: dict[str, int] | None = None
) -> Routing:
    return Routing("iris", stable, weights, mirrors or {}, salt="iris")


def assignments(table_weights: dict[str, int], users: int = 5000) -> dict[str, str]:
    table = build_table(routing(table_weights), {"v1", "v2", "v3"}, STICKY)
    return {f"user-{i}": table.choose(f"user-{i}", 0) for i in range(users)}


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        pytest.param({"v1": 100}, {"v1": 100}, id="all traffic on the stable version"),
        pytest.param({"v1": 90, "v2": 10}, {"v1": 90, "v2": 10}, id="a 90/10 split"),
        pytest.param({"v1": 0, "v2": 100}, {"v2": 100}, id="everything on the candidate"),
        pytest.param(
            {"v1": 50, "v2": 25, "v3": 25}, {"v1": 50, "v2": 25, "v3": 25}, id="three ways"
        ),
    ],
)
def test_effective_weights_match_the_routing(
    weights: dict[str, int], expected: dict[str, int]
) -> None:
    table = build_table(routing(weights), {"v1", "v2", "v3"}, STICKY)
    assert table.effective_weights() == expected


@pytest.mark.parametrize(
    ("before", "after", "grown"),
    [
        pytest.param(
            {"v1": 90, "v2": 10}, {"v1": 70, "v2": 30}, "v2", id="canary 10 -> 30 keeps its users"
        ),
        pytest.param(
            {"v1": 70, "v2": 30}, {"v1": 0, "v2": 100}, "v2", id="canary 30 -> 100 keeps its users"
        ),
        pytest.param(
            {"v1": 80, "v2": 10, "v3": 10},
            {"v1": 60, "v2": 10, "v3": 30},
            "v3",
            id="third version grows",
        ),
    ],
)
def test_raising_a_weight_keeps_every_earlier_user(
    before: dict[str, int], after: dict[str, int], grown: str
) -> None:
    first = assignments(before)
    second = assignments(after)
    had = [user for user, version in first.items() if version == grown]
    assert had, "the test needs users on the growing version"
    assert all(second[user] == grown for user in had)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(
            {"v1": 80, "v2": 10, "v3": 10},
            {"v1": 60, "v2": 30, "v3": 10},
            id="the first candidate grows beside a second",
        ),
        pytest.param(
            {"v1": 80, "v2": 10, "v3": 10},
            {"v1": 50, "v2": 10, "v3": 40},
            id="the second candidate grows beside a first",
        ),
        pytest.param(
            {"v1": 60, "v2": 20, "v3": 20},
            {"v1": 20, "v2": 40, "v3": 40},
            id="both candidates grow",
        ),
    ],
)
def test_two_candidates_never_move_each_others_users(
    before: dict[str, int], after: dict[str, int]
) -> None:
    first, second = assignments(before), assignments(after)
    for candidate in ("v2", "v3"):
        had = [user for user, version in first.items() if version == candidate]
        assert had
        assert all(second[user] == candidate for user in had), candidate


def test_the_same_key_always_gets_the_same_version() -> None:
    table = build_table(routing({"v1": 50, "v2": 50}), {"v1", "v2"}, STICKY)
    rng = random.Random(7)
    for i in range(200):
        first = table.choose(f"u{i}", rng.randrange(BUCKETS))
        assert all(table.choose(f"u{i}", rng.randrange(BUCKETS)) == first for _ in range(5))


def test_keyless_requests_follow_the_random_bucket() -> None:
    table = build_table(routing({"v1": 90, "v2": 10}), {"v1", "v2"}, STICKY)
    assert table.choose(None, 0) == "v2"
    assert table.choose(None, 999) == "v2"
    assert table.choose(None, 1000) == "v1"
    assert table.choose(None, BUCKETS - 1) == "v1"


@given(salt=st.text(max_size=100), key=st.text(max_size=300))
def test_a_users_bucket_is_the_keyed_blake2b_of_the_key(salt: str, key: str) -> None:
    # Every replica and every release must send a user to the same bucket: the bucket
    # is fixed as a keyed BLAKE2b of the key (salt cut to BLAKE2b's 64-byte key limit).
    digest = hashlib.blake2b(key.encode(), digest_size=8, key=salt.encode()[:64]).digest()
    assert bucket_of(salt, key) == int.from_bytes(digest, "big") % BUCKETS


@pytest.mark.parametrize(
    ("salt", "key", "bucket"),
    [
        pytest.param("iris", "user-42", 1597, id="a header value"),
        pytest.param("wine", "u1", 8974, id="another model"),
        pytest.param("x" * 80, "long salt", 3956, id="a salt beyond 64 bytes"),
    ],
)
def test_a_users_bucket_does_not_change(salt: str, key: str, bucket: int) -> None:
    # Twice: the second call takes the hasher kept for the salt.
    assert bucket_of(salt, key) == bucket_of(salt, key) == bucket


def test_the_salt_reshuffles_users_between_models() -> None:
    same = sum(bucket_of("iris", f"u{i}") == bucket_of("wine", f"u{i}") for i in range(2000))
    assert same < 20


def test_an_unready_version_gives_its_share_to_the_stable_one_without_moving_others() -> None:
    weights = {"v1": 80, "v2": 10, "v3": 10}
    healthy = build_table(routing(weights), {"v1", "v2", "v3"}, STICKY)
    degraded = build_table(routing(weights), {"v1", "v3"}, STICKY)
    assert degraded.unavailable == ("v2",)
    assert degraded.effective_weights() == {"v1": 90, "v3": 10}
    for i in range(3000):
        if healthy.choose(f"u{i}", 0) == "v3":
            assert degraded.choose(f"u{i}", 0) == "v3"


def test_an_unready_stable_hands_its_range_to_the_largest_ready_version() -> None:
    table = build_table(routing({"v1": 70, "v2": 30}), {"v2"}, STICKY)
    assert table.effective_weights() == {"v2": 100}


def test_nothing_ready_serves_nothing() -> None:
    table = build_table(routing({"v1": 100}), set(), STICKY)
    assert not table.serving


def test_mirrors_only_name_ready_versions() -> None:
    table = build_table(routing({"v1": 100}, mirrors={"v2": 50, "v3": 20}), {"v1", "v2"}, STICKY)
    assert table.mirrors == (("v2", 50),)


@given(
    st.integers(min_value=0, max_value=100),
    st.integers(min_value=0, max_value=100),
    st.integers(min_value=0, max_value=BUCKETS - 1),
)
def test_every_bucket_maps_to_a_version_with_weight(first: int, second: int, bucket: int) -> None:
    low, high = sorted((first, second))
    names = {"v1": low, "v2": high - low, "v3": 100 - high}
    checked = check_routing(IRIS, names, {})
    table = build_table(checked, {"v1", "v2", "v3"}, STICKY)
    assert sum(table.effective_weights().values()) == 100
    assert checked.weights[table.version_for_bucket(bucket)] > 0


@pytest.mark.parametrize(
    ("weights", "mirrors", "error", "message"),
    [
        pytest.param(
            {"v1": 90, "v2": 20}, {}, ValidationError, "sum to 100, got 110", id="sum above 100"
        ),
        pytest.param({"v1": 95}, {}, ValidationError, "sum to 100, got 95", id="sum below 100"),
        pytest.param(
            {"v1": 110, "v2": -10}, {}, ValidationError, "within 0..100", id="out of range"
        ),
        pytest.param(
            {"v1": 50.5, "v2": 49.5}, {}, ValidationError, "whole percent", id="fractional"
        ),
        pytest.param({"v1": 100, "v9": 0}, {}, NotFound, "no version 'v9'", id="unknown version"),
        pytest.param(
            {"v1": 90, "v2": 10},
            {"v2": 50},
            ValidationError,
            "both serve",
            id="served and mirrored",
        ),
        pytest.param({"v1": 100}, {"v3": 0}, ValidationError, "within 1..100", id="zero mirror"),
        pytest.param({}, {}, ValidationError, "at least one", id="nothing"),
    ],
)
def test_bad_routing_is_refused_with_the_reason(
    weights: dict[str, object], mirrors: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        check_routing(IRIS, weights, mirrors)


def test_the_anchor_stays_put_when_the_configured_stable_leaves() -> None:
    current = check_routing(IRIS, {"v2": 60, "v3": 40}, {})
    assert current.stable == "v2"
    following = check_routing(IRIS, {"v2": 40, "v3": 60}, {}, current)
    assert following.stable == "v2"


@pytest.mark.parametrize(
    ("items", "message"),
    [
        pytest.param(["v1"], "VERSION=PERCENT", id="no equals sign"),
        pytest.param(["v1=ninety"], "not a whole number", id="not a number"),
        pytest.param(["v1=50", "v1=50"], "given twice", id="duplicate"),
    ],
)
def test_assignments_are_parsed_or_refused(items: list[str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_assignments(items, "weight")


def test_assignments_parse() -> None:
    assert parse_assignments(["v1=90", "v2=10"], "weight") == {"v1": 90, "v2": 10}


@pytest.mark.parametrize(
    ("weights", "ready", "meant_share"),
    [
        pytest.param({"v1": 90, "v2": 10}, {"v1", "v2"}, {}, id="every version ready: no fallback"),
        pytest.param({"v1": 90, "v2": 10}, {"v1"}, {"v2": 0.10}, id="an unready candidate's tenth"),
        pytest.param(
            {"v1": 50, "v2": 20, "v3": 30},
            {"v1", "v2"},
            {"v3": 0.30},
            id="the second candidate's range from the top",
        ),
        pytest.param(
            {"v1": 40, "v2": 30, "v3": 30},
            {"v1"},
            {"v2": 0.30, "v3": 0.30},
            id="both candidates unready",
        ),
    ],
)
def test_requests_meant_for_an_unready_version_are_told_apart(
    weights: dict[str, int], ready: set[str], meant_share: dict[str, float]
) -> None:
    table = build_table(routing(weights), ready, STICKY)
    users = [f"user-{i}" for i in range(20_000)]
    meant: dict[str, int] = {}
    for user in users:
        intended = table.fallback_for(user, 0)
        if intended is not None:
            # The anchor answers in its place, and the user's own bucket is kept.
            assert table.choose(user, 0) == "v1"
            meant[intended] = meant.get(intended, 0) + 1
    assert set(meant) == set(meant_share)
    for version, share in meant_share.items():
        assert meant[version] / len(users) == pytest.approx(share, abs=0.015)


@given(st.integers(0, BUCKETS - 1))
def test_a_fallback_bucket_is_one_the_routing_gave_to_an_unready_version(bucket: int) -> None:
    weights = {"v1": 60, "v2": 25, "v3": 15}
    full = build_table(routing(weights), {"v1", "v2", "v3"}, None)
    partial = build_table(routing(weights), {"v1", "v3"}, None)
    intended = full.choose(None, bucket)
    assert partial.fallback_for(None, bucket) == (intended if intended == "v2" else None)
