"""A version's refusal reaches the caller with the status its own server chose, where
that status means the same to the caller; otherwise 422."""

from __future__ import annotations

import pytest

from rollwise.errors import RequestRejected
from rollwise.server.errors import error_reply, status_of


@pytest.mark.parametrize(
    ("upstream_status", "answered"),
    [
        pytest.param(400, 400, id="upstream-400-kept"),
        pytest.param(413, 413, id="upstream-413-kept"),
        pytest.param(422, 422, id="upstream-422-kept"),
        pytest.param(None, 422, id="in-process-refusal-422"),
        pytest.param(418, 422, id="other-status-422"),
    ],
)
def test_a_refusal_keeps_the_upstreams_status(upstream_status: int | None, answered: int) -> None:
    error = RequestRejected("wrong feature count", version="v2", upstream_status=upstream_status)
    assert status_of(error) == answered
    reply = error_reply(error)
    assert (reply.status, reply.body["error"], reply.body["version"]) == (
        answered,
        "wrong feature count",
        "v2",
    )
