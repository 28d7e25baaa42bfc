"""In-memory, mergeable measurements per (model, version, role).

The request path only adds to plain counters and histograms owned by the event loop's
thread, so it takes no lock. About once a second the gateway swaps the current window
out, writes it to the store as a time bucket and folds it into the running totals
that ``/metrics`` and ``status`` show. Windows from several replicas or several seconds
merge by addition.

Every call to a version is one of ``requests``: answered, failed by the version
(``errors``, of which ``timeouts`` ran out of time), or refused as the caller's bad
input (``client_errors``), which never counts against the version. A refusal adds no
latency: it is no answer, and a version that refuses quickly must not look fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rollwise.domain import Role
from rollwise.metrics.histogram import LogHistogram

MAX_CATEGORIES = 64
OTHER_CATEGORY = "__other__"

MetricKey = tuple[str, str, Role]


def _category(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass
class VersionWindow:
    """What one version did in one role during one window, in mergeable form."""

    requests: int = 0
    errors: int = 0
    timeouts: int = 0
    client_errors: int = 0
    """Requests the version refused as bad input (the caller's error, not in ``errors``)."""
    rows: int = 0
    latency_ms: LogHistogram = field(default_factory=LogHistogram)
    latency_sum_ms: float = 0.0
    outputs: dict[str, int] = field(default_factory=dict)
    """Counts of predicted classes (classification)."""
    output_values: LogHistogram = field(default_factory=LogHistogram)
    """Magnitudes of predicted numbers (regression); ``negative_outputs`` counts signs."""
    negative_outputs: int = 0
    output_sum: float = 0.0
    output_sum_sq: float = 0.0
    compared: int = 0
    agreed: int = 0
    dropped: int = 0
    users: int = 0
    """Sticky users first routed to this version since its replica's routing last
    changed: the unit a split by user assigns, which the sample-ratio check counts."""
    feedback: int = 0
    correct: int = 0
    abs_error_sum: float = 0.0
    sq_error_sum: float = 0.0
    quartic_error_sum: float = 0.0
    """Sum of error⁴, which an interval for the RMSE needs."""
    satisfaction: int = 0
    """Answers rated by a user (thumbs as 1/0 or a score in [0, 1]), apart from labels."""
    satisfaction_sum: float = 0.0
    satisfaction_sq_sum: float = 0.0
    judged: int = 0
    """Mirrored answers a judge comparator preferred one way (ties not among them)."""
    wins: int = 0
    """Of ``judged``, those where the judge preferred this (shadow) version's answer."""
    ties: int = 0
    compare_dropped: int = 0
    """Comparisons by an endpoint (embedding, judge) dropped: queue full, or failed."""
    # LLM endpoints (``openai`` versions; see rollwise.metrics.llm): per answered request.
    llm_answers: int = 0
    ttft_ms: LogHistogram = field(default_factory=LogHistogram)
    ttft_sum_ms: float = 0.0
    itl_requests: int = 0
    """Answers with two content chunks or more: those with an inter-token latency."""
    itl_sum_ms: float = 0.0
    itl_sq_sum_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_estimated: int = 0
    """Answers whose tokens were approximated from the stream (no ``usage``)."""
    tokens_per_s_sum: float = 0.0
    tokens_per_s_sq_sum: float = 0.0
    cost_sum: float = 0.0
    cost_sq_sum: float = 0.0
    finish_length: int = 0
    finish_content_filter: int = 0
    empty_answers: int = 0

    def record_call(self, latency_ms: float, *, failed: bool, timed_out: bool) -> None:
        """One call to the version: its latency, and whether it failed or timed out."""
        self.requests += 1
        self.errors += failed
        self.timeouts += timed_out
        self.latency_ms.record(latency_ms)
        self.latency_sum_ms += latency_ms

    def record_refusal(self) -> None:
        """One call the version refused as the caller's bad input."""
        self.requests += 1
        self.client_errors += 1

    def record_outputs(self, values: Sequence[Any], categorical: bool) -> None:
        self.rows += len(values)
        if categorical:
            outputs = self.outputs
            for value in values:
                name = _category(value)
                if name in outputs:
                    outputs[name] += 1
                elif len(outputs) < MAX_CATEGORIES:
                    outputs[name] = 1
                else:
                    outputs[OTHER_CATEGORY] = outputs.get(OTHER_CATEGORY, 0) + 1
            return
        for value in values:
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if number < 0:
                self.negative_outputs += 1
            self.output_values.record(abs(number))
            self.output_sum += number
            self.output_sum_sq += number * number

    def merge(self, other: VersionWindow) -> None:
        for name in _SCALARS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latency_ms.update(other.latency_ms)
        self.ttft_ms.update(other.ttft_ms)
        for name, count in other.outputs.items():
            self.outputs[name] = self.outputs.get(name, 0) + count
        self.output_values.update(other.output_values)

    def copy(self) -> VersionWindow:
        clone = VersionWindow()
        clone.merge(self)
        return clone

    @property
    def empty(self) -> bool:
        return not (
            self.requests
            or self.dropped
            or self.feedback
            or self.compared
            or self.satisfaction
            or self.judged
            or self.ties
            or self.compare_dropped
        )

    def to_payload(self) -> dict[str, Any]:
        """A compact JSON-able form; zero fields are left out."""
        payload: dict[str, Any] = {}
        for name in _SCALARS:
            value = getattr(self, name)
            if value:
                payload[name] = value
        if self.latency_ms.count:
            payload["latency_ms"] = _json_keys(self.latency_ms.to_dict())
        if self.outputs:
            payload["outputs"] = dict(self.outputs)
        if self.output_values.count:
            payload["output_values"] = _json_keys(self.output_values.to_dict())
        if self.ttft_ms.count:
            payload["ttft_ms"] = _json_keys(self.ttft_ms.to_dict())
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> VersionWindow:
        window = cls()
        for name in _SCALARS:
            if name in payload:
                setattr(window, name, payload[name])
        if "latency_ms" in payload:
            window.latency_ms = LogHistogram.from_dict(payload["latency_ms"])
        if "outputs" in payload:
            window.outputs = {str(k): int(v) for k, v in payload["outputs"].items()}
        if "output_values" in payload:
            window.output_values = LogHistogram.from_dict(payload["output_values"])
        if "ttft_ms" in payload:
            window.ttft_ms = LogHistogram.from_dict(payload["ttft_ms"])
        return window

    def summary(self) -> dict[str, Any]:
        """Readable figures: rates, mean and quantile latencies."""
        result: dict[str, Any] = {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.errors / self.requests if self.requests else None,
            "client_errors": self.client_errors,
            "client_error_rate": self.client_errors / self.requests if self.requests else None,
            "latency_p50_ms": self.latency_ms.quantile(0.5) if self.latency_ms.count else None,
            "latency_p95_ms": self.latency_ms.quantile(0.95) if self.latency_ms.count else None,
            "latency_p99_ms": self.latency_ms.quantile(0.99) if self.latency_ms.count else None,
            "latency_mean_ms": (
                self.latency_sum_ms / self.latency_ms.count if self.latency_ms.count else None
            ),
            "outputs": dict(self.outputs),
        }
        if self.users:
            result["users"] = self.users
        if self.compared or self.dropped:
            result["compared"] = self.compared
            result["agreement"] = self.agreed / self.compared if self.compared else None
            result["dropped"] = self.dropped
        if self.judged or self.ties or self.compare_dropped:
            result["judged"] = self.judged
            result["win_rate"] = self.wins / self.judged if self.judged else None
            result["ties"] = self.ties
            result["compare_dropped"] = self.compare_dropped
        if self.feedback:
            result["feedback"] = self.feedback
            result["accuracy"] = self.correct / self.feedback
            result["mae"] = self.abs_error_sum / self.feedback
            result["rmse"] = (self.sq_error_sum / self.feedback) ** 0.5
        if self.satisfaction:
            result["satisfaction_count"] = self.satisfaction
            result["satisfaction"] = self.satisfaction_sum / self.satisfaction
        if self.llm_answers:
            result.update(_llm_summary(self))
        return result


_SCALARS = (
    "requests",
    "errors",
    "timeouts",
    "client_errors",
    "rows",
    "latency_sum_ms",
    "negative_outputs",
    "output_sum",
    "output_sum_sq",
    "compared",
    "agreed",
    "dropped",
    "users",
    "feedback",
    "correct",
    "abs_error_sum",
    "sq_error_sum",
    "quartic_error_sum",
    "satisfaction",
    "satisfaction_sum",
    "satisfaction_sq_sum",
    "judged",
    "wins",
    "ties",
    "compare_dropped",
    "llm_answers",
    "ttft_sum_ms",
    "itl_requests",
    "itl_sum_ms",
    "itl_sq_sum_ms",
    "prompt_tokens",
    "completion_tokens",
    "tokens_estimated",
    "tokens_per_s_sum",
    "tokens_per_s_sq_sum",
    "cost_sum",
    "cost_sq_sum",
    "finish_length",
    "finish_content_filter",
    "empty_answers",
)


def _llm_summary(window: VersionWindow) -> dict[str, Any]:
    """The LLM figures of a window with answered LLM requests."""
    n = window.llm_answers
    ttft = window.ttft_ms
    return {
        "llm_answers": n,
        "ttft_p50_ms": ttft.quantile(0.5) if ttft.count else None,
        "ttft_p95_ms": ttft.quantile(0.95) if ttft.count else None,
        "ttft_p99_ms": ttft.quantile(0.99) if ttft.count else None,
        "ttft_mean_ms": window.ttft_sum_ms / ttft.count if ttft.count else None,
        "itl_mean_ms": window.itl_sum_ms / window.itl_requests if window.itl_requests else None,
        "prompt_tokens": window.prompt_tokens,
        "completion_tokens": window.completion_tokens,
        "tokens_estimated": window.tokens_estimated,
        "tokens_per_s": window.tokens_per_s_sum / n,
        "cost_total": window.cost_sum,
        "cost_per_request": window.cost_sum / n,
        "finish_length_rate": window.finish_length / n,
        "finish_content_filter_rate": window.finish_content_filter / n,
        "empty_answer_rate": window.empty_answers / n,
    }


def _json_keys(counts: Mapping[int, int]) -> dict[str, int]:
    return {str(index): count for index, count in counts.items()}


def merge_windows(windows: Iterable[VersionWindow]) -> VersionWindow:
    total = VersionWindow()
    for window in windows:
        total.merge(window)
    return total


class MetricsRecorder:
    """The current window and the running totals of every (model, version, role)."""

    def __init__(self) -> None:
        self._window: dict[MetricKey, VersionWindow] = {}
        self._totals: dict[MetricKey, VersionWindow] = {}
        self._unwritten: dict[MetricKey, VersionWindow] = {}
        """Windows the store could not take yet: already in the totals, due for the store."""

    def window(self, model: str, version: str, role: Role) -> VersionWindow:
        key = (model, version, role)
        window = self._window.get(key)
        if window is None:
            window = self._window[key] = VersionWindow()
        return window

    def swap(self) -> dict[MetricKey, VersionWindow]:
        """Take the current window (for the store) and fold it into the totals."""
        window, self._window = self._window, {}
        for key, part in window.items():
            _fold(self._totals, key, part.copy())
        unwritten, self._unwritten = self._unwritten, {}
        for key, part in unwritten.items():
            _fold(window, key, part)
        return {k: v for k, v in window.items() if not v.empty}

    def unwritten(self, windows: dict[MetricKey, VersionWindow]) -> None:
        """Give back windows from ``swap`` that the store did not take; the next swap
        returns them again (they are counted in the totals once)."""
        for key, part in windows.items():
            _fold(self._unwritten, key, part)

    def pending(self, model: str) -> list[tuple[tuple[str, Role], VersionWindow]]:
        """Copies of ``model``'s windows not yet in the store, by (version, role)."""
        return [
            ((version, role), window.copy())
            for source in (self._window, self._unwritten)
            for (name, version, role), window in source.items()
            if name == model
        ]

    def totals(self) -> Iterator[tuple[MetricKey, VersionWindow]]:
        """Running totals including the window not yet swapped out."""
        for key in sorted(set(self._totals) | set(self._window)):
            parts = (source[key] for source in (self._totals, self._window) if key in source)
            yield key, merge_windows(parts)


def _fold(into: dict[MetricKey, VersionWindow], key: MetricKey, part: VersionWindow) -> None:
    """Add ``part`` to ``into[key]``, taking ``part`` itself when the key is new."""
    if key in into:
        into[key].merge(part)
    else:
        into[key] = part


def windows_by_version(
    payloads: Iterable[tuple[str, Role, Mapping[str, Any]]],
) -> dict[tuple[str, Role], VersionWindow]:
    """Merge stored bucket payloads, given as (version, role, payload), per version and role."""
    merged: dict[tuple[str, Role], VersionWindow] = {}
    for version, role, payload in payloads:
        part = VersionWindow.from_payload(payload)
        if (version, role) in merged:
            merged[version, role].merge(part)
        else:
            merged[version, role] = part
    return merged


def merge_by_version(
    parts: Iterable[Mapping[tuple[str, Role], VersionWindow]],
) -> dict[tuple[str, Role], VersionWindow]:
    """Sum several such mappings key by key into new windows (the parts stay as they are)."""
    merged: dict[tuple[str, Role], VersionWindow] = {}
    for part in parts:
        for key, window in part.items():
            if key in merged:
                merged[key].merge(window)
            else:
                merged[key] = window.copy()
    return merged
