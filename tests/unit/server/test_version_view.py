"""What viewers see of a version: its options with every ``headers`` value masked."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from rollwise.domain import RegisteredVersion, VersionSource, VersionSpec
from rollwise.runtime.gateway import Gateway
from rollwise.secrets_env import MASK, mask_option_headers
from rollwise.server.version_routes import version_view


@pytest.mark.parametrize(
    ("options", "shown"),
    [
        pytest.param(
            {"url": "http://up/v1", "headers": {"Authorization": "Bearer sk-1", "X-Team": "ml"}},
            {"url": "http://up/v1", "headers": {"Authorization": MASK, "X-Team": MASK}},
            id="rest headers: names kept, values masked",
        ),
        pytest.param({"path": "m.onnx"}, {"path": "m.onnx"}, id="no headers: unchanged"),
        pytest.param({"headers": {}}, {"headers": {}}, id="empty headers"),
        pytest.param({"headers": "Bearer sk-1"}, {"headers": MASK}, id="headers not a mapping"),
    ],
)
def test_headers_option_values_are_masked(options: dict[str, Any], shown: dict[str, Any]) -> None:
    assert mask_option_headers(options) == shown
    assert "sk-1" not in repr(mask_option_headers(options))


def test_the_version_view_masks_headers_in_options_and_requested() -> None:
    options = {"url": "http://up/v1", "headers": {"X-Api-Key": "sk-secret"}}
    version = RegisteredVersion(
        model="m",
        spec=VersionSpec("b", "rest", options, VersionSource.API),
        requested=dict(options),
    )
    # version_view needs only the gateway's clock and heartbeat timeout.
    gateway = SimpleNamespace(
        clock=lambda: 100.0,
        config=SimpleNamespace(server=SimpleNamespace(heartbeat_timeout_s=2.0)),
    )

    view = version_view(cast(Gateway, gateway), version, [], [])

    assert view["options"] == {"url": "http://up/v1", "headers": {"X-Api-Key": MASK}}
    assert view["requested"] == {"url": "http://up/v1", "headers": {"X-Api-Key": MASK}}
    assert "sk-secret" not in repr(view)
    # The stored spec itself is untouched: replicas still send the real header.
    assert version.spec.options["headers"] == {"X-Api-Key": "sk-secret"}
