"""An ``http`` version's connection pool options: checked up front, named when wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollwise.backends import validate_backend_options
from rollwise.backends.http import HttpBackend
from rollwise.backends.options import PoolLimits, http_pool_limits
from rollwise.backends.upstream import UpstreamPool
from rollwise.domain import VersionSpec
from rollwise.errors import ConfigError

URL = "http://127.0.0.1:9001"
KEY = "models.iris.versions.v1"


def refusal(options: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        validate_backend_options(VersionSpec("v1", "http", {"url": URL, **options}), model="iris")
    return str(caught.value)


def test_the_pool_options_reach_the_backend() -> None:
    options = {
        "url": URL,
        "max_connections": 16,
        "max_connecting": 2,
        "min_idle": 3,
        "idle_timeout_s": 1.5,
    }
    validate_backend_options(VersionSpec("v1", "http", options), model="iris")
    backend = HttpBackend("v1", options, Path("."))
    assert backend.limits == PoolLimits(
        max_connections=16, max_connecting=2, min_idle=3, idle_timeout_s=1.5
    )


def test_left_out_they_take_their_defaults() -> None:
    assert http_pool_limits({"url": URL}, KEY) == PoolLimits(64, 4, 2, 4.0)


def test_defaults_above_a_small_max_connections_shrink_to_it() -> None:
    limits = http_pool_limits({"url": URL, "max_connections": 1}, KEY)
    assert (limits.max_connecting, limits.min_idle) == (1, 1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_connecting": 0}, f"{KEY}.max_connecting: must be an integer of at least 1, got 0"),
        ({"max_connecting": 2.5}, f"{KEY}.max_connecting: must be an integer of at least 1"),
        ({"max_connecting": True}, f"{KEY}.max_connecting: must be an integer of at least 1"),
        ({"min_idle": -1}, f"{KEY}.min_idle: must be an integer of at least 0, got -1"),
        ({"min_idle": "2"}, f"{KEY}.min_idle: must be an integer of at least 0"),
        ({"idle_timeout_s": 0}, f"{KEY}.idle_timeout_s: must be a positive number of seconds"),
        (
            {"idle_timeout_s": float("inf")},
            f"{KEY}.idle_timeout_s: must be a finite number of seconds",
        ),
        (
            {"max_connections": 8, "max_connecting": 9},
            f"{KEY}.max_connecting: 9 is more than max_connections (8); "
            "raise max_connections or lower max_connecting",
        ),
        (
            {"max_connections": 2, "min_idle": 3},
            f"{KEY}.min_idle: 3 is more than max_connections (2)",
        ),
        ({"max_connectng": 2}, f"{KEY}.max_connectng: unknown option for backend 'http'"),
    ],
)
def test_bad_pool_options_are_refused_with_their_key(options: dict[str, Any], message: str) -> None:
    assert refusal(options).startswith(message)


def test_an_unknown_option_lists_the_pool_options() -> None:
    message = refusal({"pool_size": 3})
    assert "max_connecting" in message and "min_idle" in message


@pytest.mark.parametrize(
    "limits",
    [
        {"max_connecting": 0},
        {"max_connections": 2, "max_connecting": 3},
        {"min_idle": -1},
        {"max_connections": 2, "min_idle": 3},
    ],
)
def test_the_pool_refuses_limits_that_contradict_each_other(limits: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=r"max_connecting|min_idle"):
        UpstreamPool(URL, **limits)
