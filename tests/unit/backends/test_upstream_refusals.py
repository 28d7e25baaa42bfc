"""Which upstream answers to an inference request are the caller's error.

An upstream's own 400 for a bad request (a wrong feature count, an
unknown output) was answered 502 and counted against the version. The statuses that
mean "the request is bad" become ``RequestRejected`` with the upstream's own message;
everything else stays the version's failure.
"""

from __future__ import annotations

import orjson
import pytest

from rollwise.backends.http import UpstreamStatusError, inference_error
from rollwise.backends.upstream import UpstreamResponse
from rollwise.errors import BackendError, RequestRejected, ValidationError

URL = "http://10.0.0.7:9001"


def answer(status: int, body: bytes = b'{"error": "it says no"}') -> UpstreamResponse:
    return UpstreamResponse(status, [(b"Content-Type", b"application/json")], body)


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(400, id="400 bad request: wrong shape, datatype or output name"),
        pytest.param(413, id="413 the upstream finds the body too large"),
        pytest.param(422, id="422 the upstream cannot process the input"),
    ],
)
def test_an_answer_saying_the_request_is_bad_is_the_callers_error(status: int) -> None:
    error = inference_error(answer(status), version="v3", url=URL)
    assert isinstance(error, RequestRejected) and isinstance(error, ValidationError)
    assert not isinstance(error, BackendError)
    assert (error.version, error.upstream_status) == ("v3", status)
    assert (
        str(error)
        == f"version 'v3' refused the request (HTTP {status} from its server): it says no"
    )


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(404, id="404 the version's model is gone"),
        pytest.param(401, id="401 the version's credentials are refused"),
        pytest.param(403, id="403 the version's credentials lack a right"),
        pytest.param(408, id="408 the upstream timed out reading"),
        pytest.param(415, id="415 the content type comes from the version's config"),
        pytest.param(429, id="429 the upstream is overloaded"),
        pytest.param(500, id="500 the model failed"),
        pytest.param(503, id="503 the upstream is unavailable"),
    ],
)
def test_every_other_answer_is_the_versions_failure(status: int) -> None:
    error = inference_error(answer(status), version="v3", url=URL)
    assert isinstance(error, UpstreamStatusError) and not isinstance(error, ValidationError)
    assert (error.status, error.version, error.detail) == (status, "v3", "it says no")


def test_the_callers_message_does_not_say_where_the_upstream_runs() -> None:
    error = inference_error(answer(400), version="v3", url=URL)
    assert "10.0.0.7" not in str(error)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            orjson.dumps({"error": "x" * 100_000}),
            "x" * 299 + "…",
            id="a huge JSON message is cut",
        ),
        pytest.param(
            b"\xff\xfe bad \xc3", "\ufffd\ufffd bad \ufffd", id="invalid UTF-8 is replaced"
        ),
        pytest.param(
            b"<html>" + b"y" * 5000, "<html>" + "y" * 293 + "…", id="a huge text body is cut"
        ),
        pytest.param(b"", "(empty body)", id="an empty body is named"),
        pytest.param(b'{"detail": "no output named foo"}', "no output named foo", id="detail"),
        pytest.param(b'{"error": "  "}', '{"error": "  "}', id="a blank message shows the body"),
    ],
)
def test_the_upstreams_message_is_bounded_and_decoded_safely(body: bytes, message: str) -> None:
    error = inference_error(answer(400, body), version="v3", url=URL)
    prefix = "version 'v3' refused the request (HTTP 400 from its server): "
    assert str(error) == prefix + message
