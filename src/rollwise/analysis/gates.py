"""Gate specifications: which metric, which bound, how much data, which test.

A gate is written in a rollout spec as a small mapping, for example::

    {metric: error_rate, max_increase: 0.005}            # at most 0.5 points above stable
    {metric: latency_p99_ms, max_ratio: 1.10}            # p99 at most 10 % above stable
    {metric: accuracy, max_decrease: 0.01, min_samples: 300}
    {metric: error_rate, max: 0.02}                      # absolute, candidate only
    {metric: client_error_rate, max_increase: 0.01}      # refuses no more than stable
    {metric: shadow_agreement, min: 0.95}
    {metric: satisfaction, max_decrease: 0.05}           # users' ratings from feedback
    {metric: win_rate, min: 0.5}                          # a judge's preference in shadow
    {metric: drift_psi, max: 0.2}

Keys: ``metric`` (required); exactly one bound: ``max`` / ``min`` (absolute, on the
candidate), ``max_increase`` / ``max_decrease`` (candidate minus stable, in the metric's
unit), ``max_ratio`` / ``min_ratio`` (candidate over stable); and optionally
``min_samples`` (per arm), ``test`` (``sequential``, the default; ``fixed``; or
``mann_whitney`` for latency), ``alpha`` (default 0.05) and ``horizon`` (effective samples
per arm at which a sequential test is tuned to be tightest).

``error_rate`` is the share of requests the version failed; ``client_error_rate`` the
share it refused as the caller's bad input (see ``rollwise.analysis.summary``), which
no error rate counts: bounded relative to stable, it catches a candidate that refuses
requests the stable version takes.

LLM endpoints (``openai`` versions) add, per answered request: ``ttft_p50_ms`` /
``ttft_p95_ms`` / ``ttft_p99_ms`` (time to first token, judged as the latency quantiles
are) and ``ttft_mean_ms``, ``itl_mean_ms`` (inter-token latency), ``tokens_per_s`` (higher
is better), ``cost_per_request`` (means, judged as ``mae`` is), and
``finish_length_rate``, ``finish_content_filter_rate``, ``empty_answer_rate`` (shares,
judged as ``error_rate`` is): e.g. ``{metric: ttft_p95_ms, max_ratio: 1.2}``.

The bound also fixes the direction: ``max*`` bounds are for metrics where higher is
worse (error rates, latency, MAE/RMSE, drift) and ``min*`` / ``max_decrease`` for metrics
where higher is better (accuracy, reward, shadow agreement); other pairings are refused
as the likely mistake they are. Ratios need a positive metric (not reward). Shadow
agreement and drift compare the two versions within one figure, so they take absolute
bounds only. ``prometheus`` and ``web`` gates read a figure from outside rollwise
(keys in :mod:`rollwise.analysis.sources`, verdicts in :mod:`rollwise.analysis.external`):
any bound fits them, no ``test``, and ``min_samples`` defaults to 0.
:func:`parse_gate` raises :class:`~rollwise.errors.ConfigError` naming the key and the
value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from rollwise.analysis.sources import (
    PROMETHEUS_KEYS,
    WEB_KEYS,
    Source,
    WebSource,
    parse_prometheus,
    parse_web,
)
from rollwise.errors import ConfigError
from rollwise.stats.sequential import DEFAULT_HORIZON


class Metric(StrEnum):
    ERROR_RATE = "error_rate"
    CLIENT_ERROR_RATE = "client_error_rate"
    LATENCY_P50 = "latency_p50_ms"
    LATENCY_P95 = "latency_p95_ms"
    LATENCY_P99 = "latency_p99_ms"
    LATENCY_MEAN = "latency_mean_ms"
    # LLM endpoints (openai versions; rollwise.metrics.llm), per answered request.
    TTFT_P50 = "ttft_p50_ms"
    TTFT_P95 = "ttft_p95_ms"
    TTFT_P99 = "ttft_p99_ms"
    TTFT_MEAN = "ttft_mean_ms"
    ITL_MEAN = "itl_mean_ms"
    TOKENS_PER_S = "tokens_per_s"
    COST_PER_REQUEST = "cost_per_request"
    FINISH_LENGTH_RATE = "finish_length_rate"
    FINISH_CONTENT_FILTER_RATE = "finish_content_filter_rate"
    EMPTY_ANSWER_RATE = "empty_answer_rate"
    ACCURACY = "accuracy"
    MAE = "mae"
    RMSE = "rmse"
    REWARD = "reward"
    SHADOW_AGREEMENT = "shadow_agreement"
    SATISFACTION = "satisfaction"
    WIN_RATE = "win_rate"
    DRIFT_PSI = "drift_psi"
    DRIFT_KS = "drift_ks"
    PROMETHEUS = "prometheus"
    WEB = "web"

    @property
    def external(self) -> bool:
        """Read from outside rollwise (see ``rollwise.analysis.external``)."""
        return self in (Metric.PROMETHEUS, Metric.WEB)

    @property
    def higher_is_better(self) -> bool:
        return self in _HIGHER_IS_BETTER

    @property
    def quantile(self) -> float | None:
        """The latency quantile this metric names, if any."""
        return _QUANTILES.get(self)

    @property
    def is_latency(self) -> bool:
        return self.value.startswith("latency_")

    @property
    def reads_predictions(self) -> bool:
        """Judged from what the versions predicted (compared with labels or with each
        other), not from how they answered: absent for a version whose predictions
        rollwise cannot read (a ``rest`` version without ``output_path``)."""
        return self in _FROM_PREDICTIONS

    @property
    def single_figure(self) -> bool:
        """Compares the versions within one figure, so only absolute bounds make sense."""
        return self in (
            Metric.SHADOW_AGREEMENT,
            Metric.WIN_RATE,
            Metric.DRIFT_PSI,
            Metric.DRIFT_KS,
        )


_HIGHER_IS_BETTER = frozenset(
    {
        Metric.ACCURACY,
        Metric.REWARD,
        Metric.SHADOW_AGREEMENT,
        Metric.SATISFACTION,
        Metric.WIN_RATE,
        Metric.TOKENS_PER_S,
    }
)
_QUANTILES = {
    Metric.LATENCY_P50: 0.5,
    Metric.LATENCY_P95: 0.95,
    Metric.LATENCY_P99: 0.99,
    Metric.TTFT_P50: 0.5,
    Metric.TTFT_P95: 0.95,
    Metric.TTFT_P99: 0.99,
}
LLM_RATES = frozenset(
    {Metric.FINISH_LENGTH_RATE, Metric.FINISH_CONTENT_FILTER_RATE, Metric.EMPTY_ANSWER_RATE}
)
"""Shares of answered LLM requests, judged as proportions like ``error_rate``."""
LLM_MEANS = frozenset(
    {Metric.TTFT_MEAN, Metric.ITL_MEAN, Metric.TOKENS_PER_S, Metric.COST_PER_REQUEST}
)
"""Means per answered LLM request, judged from sums and sums of squares like ``mae``."""
_FROM_PREDICTIONS = frozenset(
    {
        Metric.ACCURACY,
        Metric.MAE,
        Metric.RMSE,
        Metric.REWARD,
        Metric.SHADOW_AGREEMENT,
        Metric.WIN_RATE,
        Metric.DRIFT_PSI,
        Metric.DRIFT_KS,
    }
)
_SHARES = frozenset(
    {
        Metric.ERROR_RATE,
        Metric.CLIENT_ERROR_RATE,
        Metric.ACCURACY,
        Metric.SHADOW_AGREEMENT,
        Metric.SATISFACTION,
        Metric.WIN_RATE,
    }
)


class Bound(StrEnum):
    MAX = "max"
    MIN = "min"
    MAX_INCREASE = "max_increase"
    MAX_DECREASE = "max_decrease"
    MAX_RATIO = "max_ratio"
    MIN_RATIO = "min_ratio"

    @property
    def relative(self) -> bool:
        return self not in (Bound.MAX, Bound.MIN)

    @property
    def ratio(self) -> bool:
        return self in (Bound.MAX_RATIO, Bound.MIN_RATIO)

    @property
    def caps_above(self) -> bool:
        """True when the bound caps the metric from above (breaking it means "too high")."""
        return self in (Bound.MAX, Bound.MAX_INCREASE, Bound.MAX_RATIO)


_UPPER_FOR_LOWER_IS_BETTER = (Bound.MAX, Bound.MAX_INCREASE, Bound.MAX_RATIO)
_LOWER_FOR_HIGHER_IS_BETTER = (Bound.MIN, Bound.MAX_DECREASE, Bound.MIN_RATIO)


class Method(StrEnum):
    """The test that judges a gate."""

    SEQUENTIAL = "sequential"
    """Always-valid confidence sequence: safe to look at every tick (default)."""
    FIXED = "fixed"
    """Fixed-horizon interval (z or Welch t): valid only if judged once."""
    MANN_WHITNEY = "mann_whitney"
    """Rank test and Hodges-Lehmann shift on the latency histograms (fixed horizon)."""


DEFAULT_ALPHA = 0.05
DEFAULT_MIN_SAMPLES = 100


@dataclass(frozen=True, slots=True)
class Gate:
    """One gate: ``metric`` must stay within ``threshold`` in the sense of ``bound``."""

    metric: Metric
    bound: Bound
    threshold: float
    min_samples: int = DEFAULT_MIN_SAMPLES
    method: Method = Method.SEQUENTIAL
    alpha: float = DEFAULT_ALPHA
    horizon: float = DEFAULT_HORIZON
    source: Source | None = None
    """Where an external metric (prometheus, web) is read from; None for the others."""

    def __post_init__(self) -> None:
        _validate(self, where="gate")

    @property
    def name(self) -> str:
        """A short stable identifier, e.g. ``error_rate.max_increase``."""
        return f"{self.metric.value}.{self.bound.value}"

    def describe(self) -> str:
        """The gate in words, for events and the dashboard."""
        m, t = self.metric.value, self.threshold
        if self.source is not None:
            m = self.source.describe()
            if isinstance(self.source, WebSource) and self.source.implicit_bound:
                return f"{m} answers true"
        return {
            Bound.MAX: f"{m} at most {t:g}",
            Bound.MIN: f"{m} at least {t:g}",
            Bound.MAX_INCREASE: f"{m} at most {t:g} above stable",
            Bound.MAX_DECREASE: f"{m} at most {t:g} below stable",
            Bound.MAX_RATIO: f"{m} at most {t:g} times stable",
            Bound.MIN_RATIO: f"{m} at least {t:g} times stable",
        }[self.bound]

    def to_dict(self) -> dict[str, Any]:
        """The spec form that :func:`parse_gate` reads back."""
        out: dict[str, Any] = {"metric": self.metric.value, self.bound.value: self.threshold}
        if self.source is not None:
            if isinstance(self.source, WebSource) and self.source.implicit_bound:
                del out[self.bound.value]
            out.update(self.source.to_dict())
            if self.min_samples:
                out["min_samples"] = self.min_samples
            return out
        if self.min_samples != DEFAULT_MIN_SAMPLES:
            out["min_samples"] = self.min_samples
        if self.method is not Method.SEQUENTIAL:
            out["test"] = self.method.value
        if self.alpha != DEFAULT_ALPHA:
            out["alpha"] = self.alpha
        if self.horizon != DEFAULT_HORIZON:
            out["horizon"] = self.horizon
        return out


_OPTIONAL_KEYS = ("min_samples", "test", "alpha", "horizon")
_BOUND_KEYS = tuple(b.value for b in Bound)


def _validate(gate: Gate, where: str) -> None:
    metric, bound = gate.metric, gate.bound
    key = bound.value
    if not math.isfinite(gate.threshold):
        raise ConfigError(f"{where}: {key} must be a finite number, got {gate.threshold!r}")
    if metric.external:
        _validate_external(gate, where)
        return
    if metric.single_figure and bound.relative:
        raise ConfigError(
            f"{where}: metric {metric.value!r} takes an absolute bound (min or max), not {key!r}"
        )
    allowed = _LOWER_FOR_HIGHER_IS_BETTER if metric.higher_is_better else _UPPER_FOR_LOWER_IS_BETTER
    if bound not in allowed:
        names = ", ".join(b.value for b in allowed if not (metric.single_figure and b.relative))
        raise ConfigError(
            f"{where}: {key!r} does not fit metric {metric.value!r} "
            f"({'higher' if metric.higher_is_better else 'lower'} is better); use {names}"
        )
    if bound.ratio:
        if metric is Metric.REWARD:
            raise ConfigError(f"{where}: {key!r} needs a positive metric; reward can be negative")
        if gate.threshold <= 0:
            raise ConfigError(f"{where}: {key} must be > 0, got {gate.threshold!r}")
    share = metric in _SHARES or metric in LLM_RATES
    if share and not bound.relative and not 0.0 <= gate.threshold <= 1.0:
        raise ConfigError(
            f"{where}: {key} for {metric.value} is a share in [0, 1], got {gate.threshold!r}"
        )
    if metric is Metric.DRIFT_KS and not 0.0 < gate.threshold < 1.0:
        raise ConfigError(
            f"{where}: max for drift_ks is a distance in (0, 1), got {gate.threshold!r}"
        )
    if metric is Metric.DRIFT_PSI and gate.threshold <= 0.0:
        raise ConfigError(f"{where}: max for drift_psi must be > 0, got {gate.threshold!r}")
    if gate.method is Method.MANN_WHITNEY:
        if not metric.is_latency:
            raise ConfigError(
                f"{where}: test 'mann_whitney' is for latency metrics, not {metric.value!r}"
            )
        if not bound.relative:
            raise ConfigError(
                f"{where}: test 'mann_whitney' compares versions; {key!r} is absolute"
            )
    if gate.min_samples < 1:
        raise ConfigError(f"{where}: min_samples must be >= 1, got {gate.min_samples!r}")
    if not 0.0 < gate.alpha < 0.5:
        raise ConfigError(f"{where}: alpha must be in (0, 0.5), got {gate.alpha!r}")
    if not gate.horizon > 0:
        raise ConfigError(f"{where}: horizon must be > 0, got {gate.horizon!r}")


def _validate_external(gate: Gate, where: str) -> None:
    """External figures have no direction rollwise knows: every bound is allowed, and
    the user's choice of ``max*`` or ``min*`` says which way is worse."""
    if gate.source is None:
        raise ConfigError(f"{where}: metric {gate.metric.value!r} needs its source")
    if gate.bound.ratio and gate.threshold <= 0:
        raise ConfigError(f"{where}: {gate.bound.value} must be > 0, got {gate.threshold!r}")
    if gate.min_samples < 0:
        raise ConfigError(f"{where}: min_samples must be >= 0, got {gate.min_samples!r}")


def _parse_external(data: Mapping[str, Any], metric: Metric, where: str) -> Gate:
    own = PROMETHEUS_KEYS if metric is Metric.PROMETHEUS else WEB_KEYS
    known = ("metric", *_BOUND_KEYS, "min_samples", *own)
    unknown = [k for k in data if k not in known]
    if unknown:
        why = ""
        if unknown[0] in _OPTIONAL_KEYS:
            why = f"; {metric.value} gates run no statistical test"
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} for metric {metric.value} "
            f"(known: {', '.join(known)}){why}"
        )
    bounds = [k for k in _BOUND_KEYS if k in data]
    implicit = metric is Metric.WEB and not bounds
    if len(bounds) != 1 and not implicit:
        found = ", ".join(bounds) if bounds else "none"
        raise ConfigError(
            f"{where}: metric {metric.value!r} needs exactly one bound of "
            f"{', '.join(_BOUND_KEYS)} (found {found})"
        )
    # A web gate without a bound wants true (a number counts as true from 1 up).
    bound = Bound.MIN if implicit else Bound(bounds[0])
    threshold = 1.0 if implicit else _number(data, bound.value, where)
    min_samples = 0
    if "min_samples" in data:
        raw = data["min_samples"]
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(f"{where}: min_samples must be an integer, got {raw!r}")
        min_samples = raw
    source: Source
    if metric is Metric.PROMETHEUS:
        source = parse_prometheus(data, relative=bound.relative, where=where)
    else:
        if bound.relative:
            raise ConfigError(
                f"{where}: metric 'web' takes an absolute bound (min or max) or none, "
                f"not {bound.value!r}: the check answers once for the rollout"
            )
        source = parse_web(data, implicit_bound=implicit, where=where)
    try:
        return Gate(metric, bound, threshold, min_samples, source=source)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("gate: ", f"{where}: ", 1)) from None


def _number(data: Mapping[str, Any], key: str, where: str) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def parse_gate(data: Mapping[str, Any], *, where: str = "gate") -> Gate:
    """A :class:`Gate` from its spec mapping; ``where`` prefixes error messages."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: a gate must be a mapping, got {data!r}")
    if data.get("metric") in (Metric.PROMETHEUS.value, Metric.WEB.value):
        return _parse_external(data, Metric(data["metric"]), where)
    unknown = [
        k for k in data if k != "metric" and k not in _BOUND_KEYS and k not in _OPTIONAL_KEYS
    ]
    if unknown:
        known = ", ".join(("metric", *_BOUND_KEYS, *_OPTIONAL_KEYS))
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {known})")
    if "metric" not in data:
        raise ConfigError(f"{where}: missing key 'metric'")
    raw_metric = data["metric"]
    try:
        metric = Metric(raw_metric)
    except ValueError:
        names = ", ".join(m.value for m in Metric)
        raise ConfigError(f"{where}: metric {raw_metric!r} is not one of {names}") from None
    bounds = [k for k in _BOUND_KEYS if k in data]
    if len(bounds) != 1:
        found = ", ".join(bounds) if bounds else "none"
        raise ConfigError(
            f"{where}: metric {metric.value!r} needs exactly one bound of "
            f"{', '.join(_BOUND_KEYS)} (found {found})"
        )
    bound = Bound(bounds[0])
    threshold = _number(data, bound.value, where)
    min_samples = DEFAULT_MIN_SAMPLES
    if "min_samples" in data:
        raw = data["min_samples"]
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(f"{where}: min_samples must be an integer, got {raw!r}")
        min_samples = raw
    method = Method.SEQUENTIAL
    if "test" in data:
        try:
            method = Method(data["test"])
        except ValueError:
            names = ", ".join(m.value for m in Method)
            raise ConfigError(f"{where}: test {data['test']!r} is not one of {names}") from None
    alpha = _number(data, "alpha", where) if "alpha" in data else DEFAULT_ALPHA
    horizon = _number(data, "horizon", where) if "horizon" in data else DEFAULT_HORIZON
    try:
        return Gate(metric, bound, threshold, min_samples, method, alpha, horizon)
    except ConfigError as exc:
        # Validation speaks of "gate"; say which entry of the spec it was.
        raise ConfigError(str(exc).replace("gate: ", f"{where}: ", 1)) from None


def parse_gates(items: Sequence[Mapping[str, Any]], *, where: str = "gates") -> tuple[Gate, ...]:
    """Every gate of a list; messages say which entry (``gates[1]: ...``)."""
    if isinstance(items, str | bytes) or not isinstance(items, Sequence):
        raise ConfigError(f"{where}: must be a list of gates, got {items!r}")
    return tuple(parse_gate(item, where=f"{where}[{i}]") for i, item in enumerate(items))
