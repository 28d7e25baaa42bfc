"""A prediction read out of arbitrary JSON answers through a version's ``output_path``."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollwise.backends.output_path import OutputPath
from rollwise.errors import ConfigError

LIMIT = 1_000_000


def read(path: str, answer: Any, *, classification: bool = True) -> list[Any]:
    reading = OutputPath(path, "output_path").read(
        orjson.dumps(answer), classification=classification, limit_bytes=LIMIT
    )
    assert reading.problem == "", reading.problem
    return reading.rows


def problem(path: str, body: bytes, *, classification: bool = True, encoding: str = "") -> str:
    reading = OutputPath(path, "output_path").read(
        body, encoding=encoding, classification=classification, limit_bytes=LIMIT
    )
    assert reading.rows == []
    return reading.problem


@pytest.mark.parametrize(
    ("path", "answer", "rows"),
    [
        pytest.param(
            "$.predictions[*].label",
            {"predictions": [{"label": "cat"}, {"label": "dog"}]},
            ["cat", "dog"],
            id="torchserve-style-objects",
        ),
        pytest.param(
            "$.outputs.classes", {"outputs": {"classes": [0, 2, 1]}}, [0, 2, 1], id="one-list"
        ),
        pytest.param("$.label", {"label": "cat", "score": 0.9}, ["cat"], id="one-value"),
        pytest.param("$[0].score", [{"score": 0.25}], [0.25], id="a-list-at-the-top"),
        pytest.param("$['the class']", {"the class": True}, [True], id="quoted-key"),
        pytest.param(
            "$.predictions", {"predictions": [[0.1, 0.9], [0.8, 0.2]]}, [1, 0], id="class-scores"
        ),
        pytest.param(
            "$.results[?(@.score > 0.5)].label",
            {"results": [{"label": "a", "score": 0.9}, {"label": "b", "score": 0.1}]},
            ["a"],
            id="a-filter",
        ),
        pytest.param("$..label", {"x": {"y": {"label": "deep"}}}, ["deep"], id="descendants"),
    ],
)
def test_the_rows_are_what_the_path_matches(path: str, answer: Any, rows: list[Any]) -> None:
    assert read(path, answer) == rows


def test_a_regression_reads_numbers_and_no_class_scores() -> None:
    assert read("$.y", {"y": [1.5, -2]}, classification=False) == [1.5, -2]
    assert "only a classification model" in problem(
        "$.y", b'{"y": [[0.1, 0.9]]}', classification=False
    )


@pytest.mark.parametrize(
    ("path", "body", "why"),
    [
        pytest.param("$.label", b"not json", "the answer is not JSON", id="not-json"),
        pytest.param("$.label", b'{"other": 1}', "$.label matches nothing", id="no-match"),
        pytest.param("$.p", b'{"p": {"a": 1}}', "row 0 of $.p is an object", id="an-object"),
        pytest.param("$.p", b'{"p": [1, null]}', "row 1 of $.p is null", id="a-null-row"),
        pytest.param("$.p", b'{"p": [["a", "b"]]}', "row 0 of $.p is a list", id="text-scores"),
        pytest.param("$.p", b'{"p": [[]]}', "row 0 of $.p is a list", id="empty-scores"),
    ],
)
def test_an_answer_that_does_not_fit_says_why(path: str, body: bytes, why: str) -> None:
    assert why in problem(path, body)


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        pytest.param("gzip", gzip.compress, id="gzip"),
        pytest.param("deflate", zlib.compress, id="deflate"),
        pytest.param("identity", lambda body: body, id="identity"),
    ],
)
def test_a_compressed_answer_is_read(encoding: str, compress: Any) -> None:
    body = compress(b'{"label": "cat"}')
    reading = OutputPath("$.label", "k").read(
        body, encoding=encoding, classification=True, limit_bytes=LIMIT
    )
    assert reading.rows == ["cat"]


def test_a_compressed_answer_never_expands_past_the_limit() -> None:
    bomb = gzip.compress(b'{"label": "' + b"a" * 10_000_000 + b'"}')
    assert len(bomb) < 20_000
    reading = OutputPath("$.label", "k").read(
        bomb, encoding="gzip", classification=True, limit_bytes=100_000
    )
    assert reading.problem == "the answer is over 100000 bytes decompressed"


def test_an_encoding_that_is_not_read_is_named() -> None:
    assert problem("$.label", b"...", encoding="br") == (
        "the answer is encoded as br, which is not read"
    )


@pytest.mark.parametrize(
    ("text", "why"),
    [
        pytest.param("$.a[", "is not a JSONPath", id="unclosed"),
        pytest.param("", "must be a JSONPath into the answer", id="empty"),
        pytest.param(3, "must be a JSONPath into the answer", id="not-text"),
    ],
)
def test_a_path_that_does_not_parse_is_refused_at_once(text: Any, why: str) -> None:
    with pytest.raises(ConfigError) as refused:
        OutputPath(text, "models.m.versions.v1.output_path")
    assert str(refused.value).startswith("models.m.versions.v1.output_path: ")
    assert why in str(refused.value)


_scalar = st.one_of(
    st.text(max_size=10),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)


@given(st.lists(_scalar, min_size=1, max_size=20))
def test_a_list_of_values_reads_back_as_its_rows(values: list[Any]) -> None:
    assert read("$.out.values", {"out": {"values": values}}) == values


@given(st.lists(st.lists(st.floats(0, 1), min_size=1, max_size=5), min_size=1, max_size=10))
def test_class_scores_read_as_the_index_of_the_highest(rows: list[list[float]]) -> None:
    assert read("$.p", {"p": rows}) == [row.index(max(row)) for row in rows]
