"""Result values of the statistical tests: what was estimated, how sure, and what follows.

Conventions shared by every test in :mod:`rollwise.stats`:

* two arms are called *control* (the stable version) and *treatment* (the candidate);
  an effect is always *treatment minus control* (or treatment over control for ratios);
* ``alternative`` names the alternative hypothesis about that effect relative to the null
  value: ``"two-sided"`` (different), ``"greater"`` (treatment larger) or ``"less"``;
* an interval has confidence ``1 - alpha``; it is two-sided for a two-sided alternative
  and one-sided (one end infinite) otherwise, as in scipy, so that the interval excludes
  the null value exactly when the p-value is at most ``alpha``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

Alternative = Literal["two-sided", "greater", "less"]
ALTERNATIVES: tuple[Alternative, ...] = ("two-sided", "greater", "less")


def check_alternative(alternative: str) -> Alternative:
    """Return ``alternative`` if it is one of :data:`ALTERNATIVES`, else raise ValueError."""
    for known in ALTERNATIVES:
        if alternative == known:
            return known
    raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")


def check_alpha(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return float(alpha)


class Decision(StrEnum):
    """What a test concludes about its null hypothesis at its level ``alpha``."""

    REJECT = "reject"
    """The data contradict the null hypothesis."""
    NO_REJECT = "no_reject"
    """Fixed horizon: the data do not contradict the null hypothesis (no evidence either way)."""
    CONTINUE = "continue"
    """Sequential: no rejection yet; keep collecting data and look again."""


@dataclass(frozen=True, slots=True)
class Interval:
    """A confidence (or credible) interval ``[low, high]`` of level ``level``."""

    low: float
    high: float
    level: float

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"interval low {self.low} is above high {self.high}")

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def width(self) -> float:
        return self.high - self.low

    def map(self, fn: Any) -> Interval:
        """The interval of ``fn(x)`` for an increasing ``fn`` (e.g. ``math.exp``)."""
        return Interval(float(fn(self.low)), float(fn(self.high)), self.level)

    def to_dict(self) -> dict[str, float | str]:
        return {"low": _json_float(self.low), "high": _json_float(self.high), "level": self.level}


@dataclass(frozen=True, slots=True)
class InferenceResult:
    """Outcome of a test of one effect: estimate, interval, p-value and decision.

    ``null_value`` is the effect under the null hypothesis (a margin for
    non-inferiority tests). ``e_value`` is set by sequential tests: the value of the
    test martingale, whose reciprocal is the always-valid p-value.
    """

    method: str
    estimate: float
    interval: Interval
    p_value: float
    statistic: float
    alpha: float
    alternative: Alternative
    null_value: float
    n_control: int
    n_treatment: int
    sequential: bool = False
    e_value: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def reject(self) -> bool:
        return self.p_value <= self.alpha

    @property
    def decision(self) -> Decision:
        if self.reject:
            return Decision.REJECT
        return Decision.CONTINUE if self.sequential else Decision.NO_REJECT

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly figures, for events and the API."""
        out: dict[str, Any] = {
            "method": self.method,
            "estimate": _json_float(self.estimate),
            "interval": self.interval.to_dict(),
            "p_value": self.p_value,
            "statistic": _json_float(self.statistic),
            "alpha": self.alpha,
            "alternative": self.alternative,
            "null_value": self.null_value,
            "n_control": self.n_control,
            "n_treatment": self.n_treatment,
            "sequential": self.sequential,
            "decision": self.decision.value,
        }
        if self.e_value is not None:
            out["e_value"] = _json_float(self.e_value)
        for key, value in self.extra.items():
            out[key] = _json_float(value)
        return out


def _json_float(value: float) -> float | str:
    """Infinite and NaN figures as strings, since JSON has no such numbers."""
    if math.isfinite(value):
        return float(value)
    return str(value)
