"""Shadow agreement and feedback scoring, the figures that judge a candidate."""

from __future__ import annotations

import pytest

from rollwise.errors import ValidationError
from rollwise.metrics.scoring import compare_outputs, labels_for, score


@pytest.mark.parametrize(
    ("served", "shadow", "tolerance", "expected"),
    [
        pytest.param([0, 1, 2], [0, 1, 2], 0.0, (3, 3), id="same classes agree"),
        pytest.param([0, 1, 2], [0, 2, 2], 0.0, (3, 2), id="one class differs"),
        pytest.param(["setosa"], ["setosa"], 0.0, (1, 1), id="string classes"),
        pytest.param([1.0], [1.0000001], 1e-6, (1, 1), id="numbers within tolerance"),
        pytest.param([1.0], [1.1], 1e-6, (1, 0), id="numbers beyond tolerance"),
        pytest.param([1], [1.0], 0.0, (1, 1), id="int and float of one value"),
        pytest.param([0, 1], [0], 0.0, (1, 1), id="shorter shadow answer"),
    ],
)
def test_agreement(
    served: list[object], shadow: list[object], tolerance: float, expected: tuple[int, int]
) -> None:
    assert compare_outputs(served, shadow, tolerance) == expected


def test_classification_counts_correct_answers() -> None:
    figures = score([0, 1, 2, 2], [0, 1, 1, 2], "classification")
    assert (figures.count, figures.correct) == (4, 3)


def test_regression_sums_absolute_and_squared_errors() -> None:
    figures = score([1.0, 2.0], [1.5, 4.0], "regression")
    assert figures.abs_error == pytest.approx(2.5)
    assert figures.sq_error == pytest.approx(0.25 + 4.0)
    assert figures.quartic_error == pytest.approx(0.0625 + 16.0)


def test_regression_labels_must_be_numbers() -> None:
    with pytest.raises(ValidationError, match="not a number"):
        score([1.0], ["cat"], "regression")


@pytest.mark.parametrize(
    ("label", "rows", "expected"),
    [
        pytest.param(2, 1, [2], id="scalar for one row"),
        pytest.param([2, 1], 2, [2, 1], id="list for two rows"),
    ],
)
def test_labels_fit_the_prediction(label: object, rows: int, expected: list[object]) -> None:
    assert labels_for(label, rows) == expected


@pytest.mark.parametrize(
    ("label", "rows", "message"),
    [
        pytest.param(2, 3, "send 'label' as a list of 3", id="scalar for three rows"),
        pytest.param([1, 2], 3, "has 2 values but the prediction had 3", id="list too short"),
    ],
)
def test_labels_that_do_not_fit_are_refused(label: object, rows: int, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        labels_for(label, rows)


@pytest.mark.parametrize(
    "label",
    [
        pytest.param(1e308, id="a label whose error overflows"),
        pytest.param(float("inf"), id="infinity"),
        pytest.param(float("nan"), id="not a number"),
    ],
)
def test_regression_labels_must_be_finite_and_on_scale(label: float) -> None:
    with pytest.raises(ValidationError, match="finite numbers"):
        score([1.0], [label], "regression")
