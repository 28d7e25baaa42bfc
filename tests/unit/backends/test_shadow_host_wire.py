"""What crosses the shadow host's socket: errors keep their family (a refusal stays the
caller's error, a timeout a timeout) and frames split wherever the stream is cut."""

from __future__ import annotations

import pytest

from rollwise.backends.base import InferenceResponse, Tensor
from rollwise.backends.shadow_wire import _frame, _Frames, decode_error, encode_error
from rollwise.errors import (
    BackendError,
    BackendLoadError,
    BackendTimeout,
    BackendUnavailable,
    PayloadTooLarge,
    RequestRejected,
    ValidationError,
)


@pytest.mark.parametrize(
    ("raised", "expected_version"),
    [
        pytest.param(RequestRejected("text", version="v2"), "v2", id="refusal"),
        pytest.param(ValidationError("4 features expected"), None, id="bad input"),
        pytest.param(PayloadTooLarge("too large"), None, id="too large"),
        pytest.param(BackendTimeout("late", version="v2"), "v2", id="timeout"),
        pytest.param(BackendUnavailable("pool full", version="v2"), "v2", id="unavailable"),
        pytest.param(BackendLoadError("no file", version="v2"), "v2", id="load failure"),
        pytest.param(BackendError("boom"), "v2", id="failure without a version gets one"),
    ],
)
def test_an_error_crosses_with_its_type_message_and_version(
    raised: Exception, expected_version: str | None
) -> None:
    decoded = decode_error(encode_error(raised, "v2"))
    assert type(decoded) is type(raised)
    assert str(decoded) == str(raised)
    assert getattr(decoded, "version", None) == expected_version


def test_any_other_exception_is_the_versions_failure() -> None:
    decoded = decode_error(encode_error(ZeroDivisionError("division by zero"), "v2"))
    assert type(decoded) is BackendError
    assert decoded.version == "v2"
    assert "ZeroDivisionError: division by zero" in str(decoded)


def test_frames_split_wherever_the_stream_is_cut() -> None:
    answer = InferenceResponse((Tensor("label", (2,), "INT64", [1, 2]),), model_version="v2")
    stream = _frame(("ok", 1, answer)) + _frame(("error", 2, ("failed", "boom", "v2", None)))
    for cut in range(len(stream) + 1):
        frames = _Frames()
        messages = frames.feed(stream[:cut]) + frames.feed(stream[cut:])
        assert messages == [("ok", 1, answer), ("error", 2, ("failed", "boom", "v2", None))]
