"""A rollout spec's ``allow_interface_change``: off unless written, a boolean only."""

from __future__ import annotations

from typing import Any

import pytest
from rollout_helpers import raw_spec

from rollwise.errors import ConfigError
from rollwise.rollout import parse_rollout_spec


def _spec(**extra: Any) -> dict[str, Any]:
    return {**raw_spec("canary", {"weights": [10]}), **extra}


@pytest.mark.parametrize(
    ("data", "allowed"),
    [
        pytest.param(_spec(), False, id="absent-means-refuse-interface-changes"),
        pytest.param(_spec(allow_interface_change=False), False, id="false"),
        pytest.param(_spec(allow_interface_change=True), True, id="true"),
    ],
)
def test_allow_interface_change_is_read_and_kept_as_written(
    data: dict[str, Any], allowed: bool
) -> None:
    spec = parse_rollout_spec(data)
    assert spec.allow_interface_change is allowed
    assert spec.to_dict() == data


@pytest.mark.parametrize("value", ["yes", 1, None], ids=["text", "number", "null"])
def test_allow_interface_change_that_is_not_a_boolean_is_refused(value: Any) -> None:
    with pytest.raises(
        ConfigError, match=r"rollout\.allow_interface_change: must be true or false"
    ):
        parse_rollout_spec(_spec(allow_interface_change=value))
