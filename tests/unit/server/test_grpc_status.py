"""Each error of the tree gets the gRPC status code that means what its HTTP status
means, with details that say what was wrong."""

from __future__ import annotations

import grpc
import pytest

from rollwise.errors import (
    AuthError,
    BackendError,
    BackendLoadError,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RequestRejected,
    RollwiseError,
    StoreError,
    ValidationError,
)
from rollwise.server.grpc_status import code_of, refusal_of
from rollwise.server.payloads import BadRequest

Code = grpc.StatusCode


@pytest.mark.parametrize(
    ("error", "code"),
    [
        pytest.param(BadRequest("not JSON"), Code.INVALID_ARGUMENT, id="bad request"),
        pytest.param(ValidationError("wrong shape"), Code.INVALID_ARGUMENT, id="bad input"),
        pytest.param(
            RequestRejected("text for a number", version="v2"),
            Code.INVALID_ARGUMENT,
            id="a version refused the input",
        ),
        pytest.param(
            RequestRejected("too big", version="v2", upstream_status=413),
            Code.RESOURCE_EXHAUSTED,
            id="an upstream found it too large",
        ),
        pytest.param(PayloadTooLarge("5 MB"), Code.RESOURCE_EXHAUSTED, id="too large"),
        pytest.param(ConfigError("bad weight"), Code.INVALID_ARGUMENT, id="bad command value"),
        pytest.param(NotFound("unknown model"), Code.NOT_FOUND, id="unknown model"),
        pytest.param(Conflict("in progress"), Code.FAILED_PRECONDITION, id="conflict"),
        pytest.param(Forbidden("viewer"), Code.PERMISSION_DENIED, id="wrong role"),
        pytest.param(AuthError("no token"), Code.UNAUTHENTICATED, id="no token"),
        pytest.param(BackendTimeout("slow"), Code.DEADLINE_EXCEEDED, id="version timed out"),
        pytest.param(BackendUnavailable("none ready"), Code.UNAVAILABLE, id="no ready version"),
        pytest.param(BackendError("crashed"), Code.INTERNAL, id="version failed"),
        pytest.param(BackendLoadError("bad file"), Code.INTERNAL, id="version cannot load"),
        pytest.param(StoreError("locked"), Code.UNAVAILABLE, id="store busy"),
        pytest.param(RollwiseError("other"), Code.UNKNOWN, id="anything else"),
    ],
)
def test_each_error_has_its_code(error: RollwiseError, code: grpc.StatusCode) -> None:
    assert code_of(error) == code


def test_details_name_the_version_once() -> None:
    assert refusal_of(BackendError("it crashed", version="v2")).details == (
        "it crashed (version 'v2')"
    )
    named = BackendError("version 'v2' of model 'iris' failed: boom", version="v2")
    assert refusal_of(named).details == "version 'v2' of model 'iris' failed: boom"
    assert refusal_of(NotFound("unknown model 'x'")).details == "unknown model 'x'"
