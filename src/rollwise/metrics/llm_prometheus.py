"""The LLM figures of ``openai`` versions as Prometheus families.

Only (model, version, role) series that answered LLM requests appear, so a gateway
without LLM versions exports none of these. TTFT is a histogram on the same buckets as
request latency; tokens, cost and finish reasons are counters, from which rates and
means per request follow in PromQL (e.g. ``rate(rollwise_llm_cost_total[5m]) /
rate(rollwise_llm_answers_total[5m])``).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from rollwise.metrics.recorder import MetricKey, VersionWindow

__all__ = ["llm_families"]


def llm_families(
    totals: Iterable[tuple[MetricKey, VersionWindow]], buckets_s: Iterable[float]
) -> list[Metric]:
    """The families of every series in ``totals`` with LLM answers."""
    labels = ["model", "version", "role"]
    bounds = tuple(buckets_s)

    def counter(name: str, text: str) -> CounterMetricFamily:
        return CounterMetricFamily(f"rollwise_llm_{name}", text, labels=labels)

    answers = counter("answers", "LLM requests answered (the denominator of the rates)")
    prompt = counter("prompt_tokens", "Prompt tokens (from usage, else approximated)")
    completion = counter("completion_tokens", "Completion tokens (from usage, else chunks)")
    estimated = counter("tokens_estimated", "Answers whose tokens were approximated")
    cost = counter("cost", "Cost from the version's prices per 1k tokens")
    length = counter("finish_length", "Answers cut by the length limit (finish_reason length)")
    filtered = counter("finish_content_filter", "Answers stopped by a content filter")
    empty = counter("empty_answers", "Answers with no text")
    ttft = HistogramMetricFamily(
        "rollwise_llm_ttft_seconds",
        "Time to the first token (streamed) or to the whole answer",
        labels=labels,
    )
    for (model, version, role), window in totals:
        if not window.llm_answers:
            continue
        values = [model, version, role.value]
        answers.add_metric(values, window.llm_answers)
        prompt.add_metric(values, window.prompt_tokens)
        completion.add_metric(values, window.completion_tokens)
        estimated.add_metric(values, window.tokens_estimated)
        cost.add_metric(values, window.cost_sum)
        length.add_metric(values, window.finish_length)
        filtered.add_metric(values, window.finish_content_filter)
        empty.add_metric(values, window.empty_answers)
        count = window.ttft_ms.count
        cumulative = [
            (str(bound), float(round(window.ttft_ms.cdf(bound * 1000.0) * count)) if count else 0.0)
            for bound in bounds
        ]
        cumulative.append(("+Inf", float(count)))
        ttft.add_metric(values, cumulative, window.ttft_sum_ms / 1000.0)
    return [answers, prompt, completion, estimated, cost, length, filtered, empty, ttft]
