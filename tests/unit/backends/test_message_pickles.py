"""Requests, answers and metadata survive a pickle round trip, compiled or not (the
shadow host sends them to its child process as pickles)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from rollwise.backends.messages import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    Tensor,
    TensorSpec,
)

_TENSOR = Tensor("input-0", (1, 4), "FP32", [5.1, 3.5, 1.4, 0.2])


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(_TENSOR, id="tensor"),
        pytest.param(
            InferenceRequest(
                (_TENSOR,), id="r-1", parameters={"user": "u"}, outputs=("label",), raw=b"{}"
            ),
            id="request",
        ),
        pytest.param(InferenceRequest((_TENSOR,)), id="request-with-defaults"),
        pytest.param(
            InferenceResponse((Tensor("label", (1,), "INT64", [2]),), "v2", {"took_ms": 1.5}),
            id="response",
        ),
        pytest.param(TensorSpec("label", "INT64", (-1,)), id="tensor-spec"),
        pytest.param(
            ModelMetadata(
                "sklearn",
                (TensorSpec("input-0", "FP32", (-1, 4)),),
                (TensorSpec("label", "INT64", (-1,)),),
                {"classes": [0, 1, 2]},
            ),
            id="metadata",
        ),
    ],
)
def test_a_message_pickles_to_an_equal_one(value: Any) -> None:
    copy = pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    assert copy == value
    assert type(copy) is type(value)
