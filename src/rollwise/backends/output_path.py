"""Reading a prediction out of an arbitrary JSON answer: a ``rest`` version's ``output_path``.

``output_path`` is a JSONPath (jsonpath-ng's extended syntax: ``$.predictions[*].label``,
``$.outputs.classes``, ``$['scores'][0]``, filters such as
``$.results[?(@.score > 0.5)].label``). It is parsed once, when the version's options are
read; a path that does not parse is refused there with the parser's words.

The rows of the prediction are what it matches: one match that is a list gives one row
per item (``$.predictions`` on ``{"predictions": [0, 2, 1]}``), several matches one row
each (``$.predictions[*].label``). A row is a string, a number or a boolean; for a
classification model a row that is a list of numbers is read as class scores, and its
class is the index of the highest (as for the Open Inference Protocol's probability
outputs). Anything else (no match, an object or null as a row, an answer that is not
JSON, or is compressed other than by gzip or deflate) makes the answer *unreadable*: it is
still passed on to the client unchanged, and only its prediction is missing.

A compressed answer (``Content-Encoding: gzip`` or ``deflate``) is decompressed to read
it, never to more than the limit it was read within, so that a small compressed body
cannot expand into a large one in memory.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from rollwise.errors import ConfigError

__all__ = ["OutputPath", "Reading"]

_EXAMPLE = "$.predictions[*].label"
# zlib's wbits: 16 + MAX_WBITS reads a gzip stream, MAX_WBITS a zlib (deflate) one.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


@dataclass(frozen=True, slots=True)
class Reading:
    """The rows read out of one answer, or why there are none."""

    rows: list[Any] = field(default_factory=list)
    problem: str = ""
    """Empty when the answer was read; otherwise what stood in the way."""


class OutputPath:
    """A parsed ``output_path``; ``read`` takes the prediction out of an answer's body."""

    def __init__(self, text: Any, where: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(
                f"{where}: must be a JSONPath into the answer, like {_EXAMPLE}, got {text!r}"
            )
        self.text = text.strip()
        # Imported by the first version that has an output_path, not by the gateway.
        from jsonpath_ng.exceptions import JSONPathError
        from jsonpath_ng.ext.parser import parse as parse_jsonpath

        try:
            self._path = parse_jsonpath(self.text)
        except (JSONPathError, ValueError, TypeError) as error:
            raise ConfigError(
                f"{where}: {self.text!r} is not a JSONPath ({error}); e.g. {_EXAMPLE}"
            ) from None

    def read(
        self, body: bytes, *, encoding: str = "", classification: bool, limit_bytes: int
    ) -> Reading:
        """The prediction in ``body`` (an answer whose ``Content-Encoding`` is
        ``encoding``), decompressed to at most ``limit_bytes``."""
        coding = encoding.strip().lower()
        if coding and coding != "identity":
            wbits = _WBITS.get(coding)
            if wbits is None:
                return Reading(problem=f"the answer is encoded as {coding}, which is not read")
            try:
                inflater = zlib.decompressobj(wbits)
                body = inflater.decompress(body, limit_bytes + 1)
            except zlib.error as error:
                return Reading(problem=f"the answer is not valid {coding} ({error})")
            if len(body) > limit_bytes or inflater.unconsumed_tail:
                return Reading(problem=f"the answer is over {limit_bytes} bytes decompressed")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return Reading(problem="the answer is not JSON")
        try:
            matches = [match.value for match in self._path.find(document)]
        except Exception as error:  # a filter on values of the wrong type, and the like
            return Reading(problem=f"{self.text} cannot be applied: {error}")
        if not matches:
            return Reading(problem=f"{self.text} matches nothing in the answer")
        values = matches[0] if len(matches) == 1 and isinstance(matches[0], list) else matches
        rows: list[Any] = []
        for index, value in enumerate(values):
            row = _row(value, classification)
            if row is None:
                return Reading(problem=f"row {index} of {self.text} is {_kind(value)}")
            rows.append(row)
        return Reading(rows)


def _row(value: Any, classification: bool) -> Any:
    """One row's prediction, or None when ``value`` cannot be one."""
    if isinstance(value, str | bool | int | float):
        return value
    if classification and isinstance(value, list) and value:
        best = 0
        for index, score in enumerate(value):
            if isinstance(score, bool) or not isinstance(score, int | float):
                return None
            if score > value[best]:
                best = index
        return best
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "null, not a prediction"
    if isinstance(value, dict):
        return "an object, not a prediction (point output_path at a value inside it)"
    if isinstance(value, list):
        return "a list, which only a classification model reads (as class scores)"
    return f"a {type(value).__name__}"
