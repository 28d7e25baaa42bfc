"""What the gRPC port reads from a call's metadata: request ids, forced versions and
sticky keys, read the way the REST data plane reads headers and bodies."""

from __future__ import annotations

from typing import Any

import pytest

from rollwise.config import parse_sticky_key
from rollwise.errors import ValidationError
from rollwise.server.dataplane import MAX_STICKY_KEY_BYTES
from rollwise.server.grpc_metadata import (
    forced_version,
    metadata_map,
    sticky_key,
    usable_request_id,
)


def test_the_first_of_a_repeated_key_wins_and_binary_values_read_as_latin1() -> None:
    items = [("x-user-id", "u1"), ("x-user-id", "u2"), ("trace-bin", b"\xe9t\xe9")]
    assert metadata_map(items) == {"x-user-id": "u1", "trace-bin": "été"}
    assert metadata_map(None) == {}


@pytest.mark.parametrize(
    ("given", "used"),
    [
        pytest.param("req-42", "req-42", id="a usable id is kept"),
        pytest.param(None, None, id="none given"),
        pytest.param("", None, id="empty"),
        pytest.param("x" * 129, None, id="too long"),
        pytest.param("bad\nid", None, id="not printable"),
    ],
)
def test_a_callers_request_id_is_used_when_it_can_be(given: str | None, used: str | None) -> None:
    assert usable_request_id(given) == used


@pytest.mark.parametrize(
    ("model_version", "metadata", "forced"),
    [
        pytest.param("", {}, None, id="routing chooses"),
        pytest.param("v2", {}, "v2", id="model_version forces"),
        pytest.param("", {"x-rollwise-version": "v3"}, "v3", id="metadata forces"),
        pytest.param("v2", {"x-rollwise-version": "v3"}, "v2", id="model_version wins"),
        pytest.param("", {"x-rollwise-version": ""}, None, id="empty metadata forces nothing"),
    ],
)
def test_a_call_forces_a_version_by_model_version_or_metadata(
    model_version: str, metadata: dict[str, str], forced: str | None
) -> None:
    assert forced_version(model_version, metadata) == forced


@pytest.mark.parametrize(
    ("setting", "metadata", "parameters", "key"),
    [
        pytest.param(None, {"x-user-id": "u1"}, {}, None, id="the model has no sticky key"),
        pytest.param("header:X-User-Id", {"x-user-id": "u1"}, {}, "u1", id="header, lowercased"),
        pytest.param("header:X-User-Id", {}, {}, None, id="header absent"),
        pytest.param("cookie:uid", {"cookie": "a=1; uid=u9"}, {}, "u9", id="cookie"),
        pytest.param("cookie:uid", {"cookie": "a=1"}, {}, None, id="cookie absent"),
        pytest.param("field:user_id", {}, {"user_id": "u5"}, "u5", id="field as parameter"),
        pytest.param("field:user_id", {}, {"user_id": 12}, "12", id="numeric parameter"),
        pytest.param("field:user_id", {"user_id": "m"}, {}, None, id="a field is no header"),
    ],
)
def test_the_sticky_key_is_read_where_the_model_says(
    setting: str | None, metadata: dict[str, str], parameters: dict[str, Any], key: str | None
) -> None:
    sticky = parse_sticky_key(setting) if setting else None
    assert sticky_key(sticky, metadata, parameters) == key


def test_a_sticky_key_over_the_limit_is_refused() -> None:
    sticky = parse_sticky_key("header:X-User-Id")
    assert sticky_key(sticky, {"x-user-id": "u" * MAX_STICKY_KEY_BYTES}, {})
    with pytest.raises(ValidationError, match=r"metadata x-user-id\) has 257 bytes; the limit"):
        sticky_key(sticky, {"x-user-id": "u" * (MAX_STICKY_KEY_BYTES + 1)}, {})
