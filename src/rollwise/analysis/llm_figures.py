"""One arm's LLM metric (``openai`` versions) as a value with its estimate.

Pure. The same statistics as rollwise's other metrics apply: time-to-first-token
quantiles by Woodruff's method on the TTFT histogram, as latency quantiles are; means
per answered request (cost, tokens/s, inter-token latency, mean TTFT) from sums and sums
of squares, as MAE is; finish-reason and empty-answer rates as proportions with
Agresti-Caffo's pseudo counts, as the error rate is.
"""

from __future__ import annotations

import math

from rollwise.analysis.gates import LLM_MEANS, LLM_RATES, Metric
from rollwise.analysis.summary import ArmSummary
from rollwise.stats.estimates import Estimate
from rollwise.stats.means import mean_estimate, moments_from_sums
from rollwise.stats.proportions import proportion_estimate
from rollwise.stats.quantiles import MIN_TAIL_COUNT, quantile_estimate, tail_count

__all__ = ["is_llm", "llm_figure", "llm_sample_size"]

Figure = tuple[float, int, Estimate | None, str | None]
"""(value, samples, estimate or None, the problem when there is no estimate)."""

_TTFT_QUANTILES = frozenset({Metric.TTFT_P50, Metric.TTFT_P95, Metric.TTFT_P99})


def is_llm(metric: Metric) -> bool:
    return metric in LLM_RATES or metric in LLM_MEANS or metric in _TTFT_QUANTILES


def llm_sample_size(metric: Metric, arm: ArmSummary) -> int:
    if metric in _TTFT_QUANTILES or metric is Metric.TTFT_MEAN:
        return arm.ttft.count
    if metric is Metric.ITL_MEAN:
        return arm.itl_requests
    return arm.llm_answers


def _rate_count(metric: Metric, arm: ArmSummary) -> int:
    if metric is Metric.FINISH_LENGTH_RATE:
        return arm.finish_length
    if metric is Metric.FINISH_CONTENT_FILTER_RATE:
        return arm.finish_content_filter
    return arm.empty_answers


def _sums(metric: Metric, arm: ArmSummary) -> tuple[float, float]:
    if metric is Metric.ITL_MEAN:
        return arm.itl_sum_ms, arm.itl_sq_sum_ms
    if metric is Metric.TOKENS_PER_S:
        return arm.tokens_per_s_sum, arm.tokens_per_s_sq_sum
    return arm.cost_sum, arm.cost_sq_sum


def llm_figure(metric: Metric, arm: ArmSummary) -> Figure:
    """``metric`` (one for which ``is_llm``) of one arm."""
    n = llm_sample_size(metric, arm)
    if metric in LLM_RATES:
        if not n:
            return math.nan, 0, None, "no answered LLM requests"
        count = _rate_count(metric, arm)
        return count / n, n, proportion_estimate(count, n), None
    q = metric.quantile
    if q is not None:
        value = arm.ttft.quantile(q) if n else math.nan
        if tail_count(arm.ttft, q) < MIN_TAIL_COUNT:
            need = math.ceil(MIN_TAIL_COUNT / min(q, 1 - q))
            return value, n, None, f"{n} first tokens; p{q * 100:g} needs at least {need}"
        return value, n, quantile_estimate(arm.ttft, q), None
    if n < 2:
        return math.nan, n, None, f"{n} samples; need at least 2 for a variance"
    if metric is Metric.TTFT_MEAN:
        mean = arm.ttft_sum_ms / n
        return mean, n, mean_estimate(n, mean, arm.ttft.variance()), None
    total, total_sq = _sums(metric, arm)
    mean, var = moments_from_sums(n, total, total_sq)
    return mean, n, mean_estimate(n, mean, var), None
