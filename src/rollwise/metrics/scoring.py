"""Scoring answers: shadow agreement with the served answer, and feedback against labels.

Pure functions over plain values; the gateway adds what they return to its metrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rollwise.errors import ValidationError

MAX_ERROR = 1e75
"""Larger errors are refused: their fourth powers would overflow the sums they feed."""


def same_answer(a: Any, b: Any, tolerance: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a == b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(float(a) - float(b)) <= tolerance * max(1.0, abs(float(a)), abs(float(b)))
    return str(a) == str(b)


def compare_outputs(
    served: Sequence[Any], shadow: Sequence[Any], tolerance: float
) -> tuple[int, int]:
    """(rows compared, rows on which the shadow agreed with the served answer)."""
    compared = min(len(served), len(shadow))
    agreed = sum(1 for a, b in zip(served, shadow, strict=False) if same_answer(a, b, tolerance))
    return compared, agreed


@dataclass(frozen=True, slots=True)
class Score:
    count: int
    correct: int
    abs_error: float
    sq_error: float
    quartic_error: float


def labels_for(label: Any, rows: int) -> list[Any]:
    if isinstance(label, list):
        if len(label) != rows:
            raise ValidationError(
                f"'label' has {len(label)} values but the prediction had {rows} rows"
            )
        return label
    if rows != 1:
        raise ValidationError(
            f"the prediction had {rows} rows; send 'label' as a list of {rows} values"
        )
    return [label]


def score(outputs: Sequence[Any], labels: Sequence[Any], task: str) -> Score:
    """Correct answers (classification) and errors (regression) of outputs against labels."""
    correct = 0
    abs_error = 0.0
    sq_error = 0.0
    quartic_error = 0.0
    for output, label in zip(outputs, labels, strict=False):
        if task == "classification":
            correct += same_answer(output, label, 0.0)
            continue
        try:
            diff = float(output) - float(label)
        except (TypeError, ValueError, OverflowError):
            raise ValidationError(
                f"label {label!r} is not a number; this model does regression"
            ) from None
        if not math.isfinite(diff) or abs(diff) > MAX_ERROR:
            raise ValidationError(
                f"label {label!r} is {diff:g} away from the prediction {output!r}; "
                "labels must be finite numbers on the scale of the predictions"
            )
        abs_error += abs(diff)
        sq_error += diff * diff
        quartic_error += diff**4
    return Score(min(len(outputs), len(labels)), correct, abs_error, sq_error, quartic_error)
