"""User satisfaction with an answer: thumbs up/down or a score in [0, 1].

A feedback body may carry ``satisfaction`` instead of, or besides, a ``label``:
``true``/``false`` (counted as 1 and 0) or a number in [0, 1]. It is summed per version
and role as a count, a sum and a sum of squares, so windows merge by addition and the
gate statistic is a mean with its variance.

The estimate (:func:`satisfaction_estimate`) is the mean shrunk by one pseudo rating of
1 and one of 0, the Agresti-Caffo adjustment the proportions use: for thumbs alone (sum
of squares = sum) it is exactly ``proportion_estimate``, so a thumbs metric is judged as
the proportion it is, and a mix of thumbs and scores as a bounded mean, with one rule
and no zero standard error when every rating so far was the same.
"""

from __future__ import annotations

import math
from typing import Any

from rollwise.errors import ValidationError
from rollwise.metrics.scoring import Score
from rollwise.stats.estimates import Estimate

PSEUDO_RATINGS = 1.0
"""Pseudo ratings of 1 and of 0 each added to a mean (see the module docstring)."""


def parse_satisfaction(value: Any) -> float:
    """The rating a feedback body's ``satisfaction`` carries, as a number in [0, 1]."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, int | float):
        raise ValidationError(
            f"'satisfaction' must be true/false (thumbs) or a number in [0, 1], got {value!r}"
        )
    number = float(value)
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise ValidationError(f"'satisfaction' must be a number in [0, 1], got {value!r}")
    return number


def satisfaction_estimate(
    n: int, total: float, total_sq: float, pseudo: float = PSEUDO_RATINGS
) -> Estimate:
    """Mean rating of ``n`` ratings (sum ``total``, sum of squares ``total_sq``), shrunk by
    ``pseudo`` ratings of 1 and of 0, with the standard error of that mean."""
    if n < 0 or pseudo < 0:
        raise ValueError(f"need n >= 0 and pseudo >= 0, got n={n}, pseudo={pseudo}")
    m = n + 2.0 * pseudo
    if m <= 0:
        raise ValueError("a mean rating needs at least one rating or a pseudo count")
    mean = (total + pseudo) / m
    # Second moment of the ratings and the pseudo ones (1² = 1, 0² = 0), then the
    # population variance: for 0/1 ratings this is p(1 - p), as for a proportion.
    var = max((total_sq + pseudo) / m - mean * mean, 0.0)
    return Estimate(mean, math.sqrt(var / m), m)


class _NoLabel:
    """The label of a feedback that carries only a satisfaction."""

    def __repr__(self) -> str:
        return "NO_LABEL"


NO_LABEL: Any = _NoLabel()
NO_SCORE = Score(0, 0, 0.0, 0.0, 0.0)
"""The figures of no label: a satisfaction alone adds nothing to accuracy or errors."""


def stored_label(label: Any, satisfaction: float | None) -> Any:
    """What the store keeps of one feedback: the label alone as before, or, with a
    satisfaction, both in one object."""
    if satisfaction is None:
        return label
    kept: dict[str, Any] = {"satisfaction": satisfaction}
    if label is not NO_LABEL:
        kept["label"] = label
    return kept
