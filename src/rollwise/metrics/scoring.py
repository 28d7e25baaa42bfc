"""Scoring answers: shadow agreement with the served answer, and feedback against labels.

Pure functions over plain values; the gateway adds what they return to its metrics.
Labels are checked before they are scored or stored (``check_labels``): ground truth
decides rollouts, so a label that cannot be a true answer of the model is refused.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rollwise.errors import ValidationError

MAX_ERROR = 1e75
"""Larger errors are refused: their fourth powers would overflow the sums they feed."""

MAX_LABEL_CHARS = 256
"""The longest class name a label may be: real class names are short, and every label
is stored and compared."""

ClassKey = tuple[str, Any]
"""A class as compared with labels: numbers by value (1 and 1.0 are one class), strings
by text, booleans apart from numbers (JSON ``true`` is not the class 1)."""


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


def describe_label(label: Any) -> str:
    """A short description of a label for an error message.

    Never the repr of a container: a label nested 1,000 deep would hit the recursion
    limit while its message is built, and a 100 KB one would flood the reply and logs.
    """
    if label is None:
        return "null"
    if isinstance(label, bool):
        return "true" if label else "false"
    if isinstance(label, dict):
        return "an object"
    if isinstance(label, list):
        return f"a list of {len(label)} values"
    if isinstance(label, str) and len(label) > 40:
        return f"a string of {len(label)} characters"
    if isinstance(label, str | int | float):
        return repr(label)
    return f"a {type(label).__name__}"


def class_key(value: Any) -> ClassKey | None:
    """How ``value`` is compared with a model's classes; None if it cannot be a class."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("number", value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        # 2.0 is the class 2; 0.5 stays a float and matches no integer class.
        return ("number", int(value) if value.is_integer() else value)
    if isinstance(value, str):
        return ("text", value)
    return None


def class_keys(classes: Iterable[Any]) -> frozenset[ClassKey]:
    """The keys of a model's classes (as ``classes_.tolist()`` or a config list gives them)."""
    return frozenset(key for key in map(class_key, classes) if key is not None)


def _class_list(classes: Collection[ClassKey]) -> str:
    shown = sorted((repr(value) for _, value in classes), key=lambda text: (len(text), text))
    more = f", … ({len(shown)} in all)" if len(shown) > 10 else ""
    return ", ".join(shown[:10]) + more


def check_labels(labels: Sequence[Any], task: str, classes: Collection[ClassKey] | None) -> None:
    """Refuse labels that cannot be a true answer of the model (``ValidationError``).

    Classification: one of ``classes`` when they are known (from the model or the
    config's ``labels:``); otherwise an integer or a string of at most
    ``MAX_LABEL_CHARS`` characters. Regression: a finite number (not a boolean, not
    text). Checked one label at a time without recursing, so any input is safe.
    """
    for index, label in enumerate(labels):
        where = "'label'" if len(labels) == 1 else f"'label'[{index}]"
        if task == "regression":
            if isinstance(label, bool) or not isinstance(label, int | float):
                raise ValidationError(
                    f"{where} is {describe_label(label)}; this model does regression, so "
                    "labels must be numbers"
                )
            if not _finite_number(label):
                raise ValidationError(
                    f"{where} is {describe_label(label)}; labels must be finite numbers"
                )
            continue
        if classes:
            if class_key(label) not in classes:
                raise ValidationError(
                    f"{where} is {describe_label(label)}, which is not one of the model's "
                    f"classes ({_class_list(classes)})"
                )
            continue
        if isinstance(label, bool) or not isinstance(label, int | str):
            raise ValidationError(
                f"{where} is {describe_label(label)}; a class label must be an integer or "
                "a string (list the model's classes under its 'labels:' key to check them)"
            )
        if isinstance(label, str) and len(label) > MAX_LABEL_CHARS:
            raise ValidationError(
                f"{where} is {describe_label(label)}; class labels are at most "
                f"{MAX_LABEL_CHARS} characters"
            )
        if isinstance(label, int) and not -(2**63) <= label < 2**63:
            raise ValidationError(
                f"{where} is an integer of {len(str(abs(label)))} digits; class labels are "
                "64-bit integers"
            )


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
                f"label {describe_label(label)} is not a number; this model does regression"
            ) from None
        if not math.isfinite(diff) or abs(diff) > MAX_ERROR:
            raise ValidationError(
                f"label {describe_label(label)} is {diff:g} away from the prediction "
                f"{describe_label(output)}; labels must be finite numbers on the scale of "
                "the predictions"
            )
        abs_error += abs(diff)
        sq_error += diff * diff
        quartic_error += diff**4
    return Score(min(len(outputs), len(labels)), correct, abs_error, sq_error, quartic_error)


def _finite_number(value: int | float) -> bool:
    # An integer too large for a float (JSON allows any number of digits) is not a
    # finite label either: math.isfinite would raise on it.
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
