"""Per-arm metric summaries: what the controller sums from metric buckets for one version.

An :class:`ArmSummary` holds only counts and sums, so summaries of many buckets, workers
and replicas merge by addition (:meth:`ArmSummary.merge`), and every gate statistic is a
function of them. One summary describes one version over one window (usually "since the
current step began").

Which count each metric uses:

* ``requests``: every call to the version; ``errors`` of them the version failed (error
  rate), ``client_errors`` of them it refused as the caller's bad input (client error
  rate). A refusal is not the version's failure, so it is never among ``errors``; but it
  stays among ``requests``, so both rates are shares of the same calls and a candidate
  that refuses what the stable version takes shows a higher client error rate;
* ``latency``: a :class:`~rollwise.metrics.histogram.LogHistogram` of request latencies in
  ms, and ``latency_sum_ms`` their exact sum (the mean's numerator);
* ``feedback``: requests with ground truth posted to ``/feedback``; for classification
  ``correct`` of them were right; for regression ``abs_error_sum``, ``sq_error_sum`` and
  ``quartic_error_sum`` are the sums of ``|e|``, ``e²`` and ``e⁴`` of the error ``e``
  (the fourth powers give the variance of ``e²``, which an RMSE interval needs); for any
  reward, ``reward_sum`` and ``reward_sq_sum``;
* ``llm_answers``: answered LLM requests (``openai`` versions), the count of the LLM
  rates (``finish_length``, ``finish_content_filter``, ``empty_answers``) and means
  (sums and sums of squares of cost and tokens/s; ``ttft`` is a histogram like
  ``latency``; ``itl_*`` over the ``itl_requests`` with two chunks or more);
* ``outputs``: the distribution of the version's answers, as counts per class label or
  as a LogHistogram of numeric outputs (values at or below 0.01 share its underflow
  bucket, so signed outputs should be shifted or binned as labels);
* ``shadow_compared`` / ``shadow_agreed``: on the candidate's summary, the mirrored
  requests on which both versions answered, and those on which the candidate agreed with
  the stable version (same class, or within the model's tolerance, or by the model's
  text comparator);
* ``satisfaction`` / ``satisfaction_sum`` / ``satisfaction_sq_sum``: users' ratings of
  answers from feedback (thumbs as 1/0, or scores in [0, 1]);
* ``shadow_judged`` / ``shadow_wins``: mirrored requests a judge comparator decided
  (ties excluded), and those it decided for the candidate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from rollwise.metrics.histogram import LogHistogram

Outputs = Mapping[str, int] | LogHistogram


@dataclass(frozen=True)
class ArmSummary:
    """Summed metrics of one version over one window (see the module docstring)."""

    requests: int = 0
    errors: int = 0
    client_errors: int = 0
    latency: LogHistogram = field(default_factory=LogHistogram)
    latency_sum_ms: float = 0.0
    feedback: int = 0
    correct: int = 0
    abs_error_sum: float = 0.0
    sq_error_sum: float = 0.0
    quartic_error_sum: float = 0.0
    reward_sum: float = 0.0
    reward_sq_sum: float = 0.0
    outputs: Outputs | None = None
    shadow_compared: int = 0
    shadow_agreed: int = 0
    satisfaction: int = 0
    satisfaction_sum: float = 0.0
    satisfaction_sq_sum: float = 0.0
    shadow_judged: int = 0
    shadow_wins: int = 0
    # LLM endpoints (rollwise.metrics.llm): per answered request.
    llm_answers: int = 0
    ttft: LogHistogram = field(default_factory=LogHistogram)
    ttft_sum_ms: float = 0.0
    itl_requests: int = 0
    itl_sum_ms: float = 0.0
    itl_sq_sum_ms: float = 0.0
    tokens_per_s_sum: float = 0.0
    tokens_per_s_sq_sum: float = 0.0
    cost_sum: float = 0.0
    cost_sq_sum: float = 0.0
    finish_length: int = 0
    finish_content_filter: int = 0
    empty_answers: int = 0

    def __post_init__(self) -> None:
        for name in _COUNTS:
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.errors > self.requests:
            raise ValueError(f"errors {self.errors} exceed requests {self.requests}")
        if self.errors + self.client_errors > self.requests:
            raise ValueError(
                f"errors {self.errors} and client_errors {self.client_errors} together "
                f"exceed requests {self.requests}"
            )
        if self.correct > self.feedback:
            raise ValueError(f"correct {self.correct} exceeds feedback {self.feedback}")
        if self.shadow_agreed > self.shadow_compared:
            raise ValueError(
                f"shadow_agreed {self.shadow_agreed} exceeds shadow_compared {self.shadow_compared}"
            )
        if self.shadow_wins > self.shadow_judged:
            raise ValueError(
                f"shadow_wins {self.shadow_wins} exceeds shadow_judged {self.shadow_judged}"
            )

    # -- derived figures (NaN when there is nothing to compute them from) ---------------

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else math.nan

    @property
    def client_error_rate(self) -> float:
        return self.client_errors / self.requests if self.requests else math.nan

    @property
    def accuracy(self) -> float:
        return self.correct / self.feedback if self.feedback else math.nan

    @property
    def mae(self) -> float:
        return self.abs_error_sum / self.feedback if self.feedback else math.nan

    @property
    def rmse(self) -> float:
        return math.sqrt(self.sq_error_sum / self.feedback) if self.feedback else math.nan

    @property
    def reward_mean(self) -> float:
        return self.reward_sum / self.feedback if self.feedback else math.nan

    @property
    def latency_mean_ms(self) -> float:
        n = self.latency.count
        if not n:
            return math.nan
        return self.latency_sum_ms / n if self.latency_sum_ms > 0 else self.latency.mean()

    @property
    def shadow_agreement(self) -> float:
        return self.shadow_agreed / self.shadow_compared if self.shadow_compared else math.nan

    @property
    def satisfaction_mean(self) -> float:
        return self.satisfaction_sum / self.satisfaction if self.satisfaction else math.nan

    @property
    def win_rate(self) -> float:
        return self.shadow_wins / self.shadow_judged if self.shadow_judged else math.nan

    @property
    def output_count(self) -> int:
        if self.outputs is None:
            return 0
        if isinstance(self.outputs, LogHistogram):
            return self.outputs.count
        return sum(self.outputs.values())

    # -- combining and (de)serialising ---------------------------------------------------

    def merge(self, other: ArmSummary) -> ArmSummary:
        """The summary of both windows together."""
        values: dict[str, Any] = {}
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name in _HISTOGRAMS:
                values[f.name] = mine.merge(theirs)
            elif f.name == "outputs":
                values[f.name] = _merge_outputs(mine, theirs)
            else:
                values[f.name] = mine + theirs
        return ArmSummary(**values)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _HISTOGRAMS:
                out[f.name] = value.to_dict()
            elif f.name == "outputs":
                if isinstance(value, LogHistogram):
                    out[f.name] = {"histogram": value.to_dict()}
                elif value is not None:
                    out[f.name] = {"labels": dict(value)}
            else:
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArmSummary:
        """Inverse of :meth:`to_dict`; missing fields are zero."""
        values: dict[str, Any] = {}
        names = {f.name for f in fields(cls)}
        for key, value in data.items():
            if key not in names:
                raise ValueError(f"unknown summary field {key!r}")
            if key in _HISTOGRAMS:
                values[key] = LogHistogram.from_dict(value)
            elif key == "outputs":
                if "histogram" in value:
                    values[key] = LogHistogram.from_dict(value["histogram"])
                else:
                    values[key] = {str(k): int(v) for k, v in value["labels"].items()}
            elif key in _COUNTS:
                values[key] = int(value)
            else:
                values[key] = float(value)
        return cls(**values)


_HISTOGRAMS = ("latency", "ttft")
_COUNTS = (
    "llm_answers",
    "itl_requests",
    "finish_length",
    "finish_content_filter",
    "empty_answers",
    "requests",
    "errors",
    "client_errors",
    "feedback",
    "correct",
    "shadow_compared",
    "shadow_agreed",
    "satisfaction",
    "shadow_judged",
    "shadow_wins",
)


def _merge_outputs(a: Outputs | None, b: Outputs | None) -> Outputs | None:
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, LogHistogram) and isinstance(b, LogHistogram):
        return a.merge(b)
    if isinstance(a, LogHistogram) or isinstance(b, LogHistogram):
        raise ValueError("cannot merge categorical outputs with a numeric output histogram")
    merged = dict(a)
    for key, count in b.items():
        merged[key] = merged.get(key, 0) + count
    return merged
