"""The LLM table of ``rollwise status``: for models with ``openai`` versions, one line per
version and role with time to first token, inter-token latency, tokens, cost and finish
reasons, read from the control API's ``GET /api/v1/models/{name}`` like the main table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table

__all__ = ["llm_table"]

_COLUMNS = (
    "version",
    "role",
    "answers",
    "TTFT p50 ms",
    "TTFT p95 ms",
    "ITL ms",
    "tok/s",
    "prompt tok",
    "compl. tok",
    "cost/req",
    "length",
    "filtered",
    "empty",
)


def _number(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def llm_table(info: Mapping[str, Any]) -> Table | None:
    """The LLM figures of a model's versions; None when no version answered an LLM
    request in the window."""
    rows: list[tuple[str, ...]] = []
    for version in info["versions"]:
        for role in ("served", "shadow"):
            figures = version.get(role) or {}
            if not figures.get("llm_answers"):
                continue
            estimated = "~" if figures.get("tokens_estimated") else ""
            rows.append(
                (
                    version["name"],
                    role,
                    str(figures["llm_answers"]),
                    _number(figures.get("ttft_p50_ms")),
                    _number(figures.get("ttft_p95_ms")),
                    _number(figures.get("itl_mean_ms")),
                    _number(figures.get("tokens_per_s"), 1),
                    estimated + str(figures.get("prompt_tokens", 0)),
                    estimated + str(figures.get("completion_tokens", 0)),
                    _number(figures.get("cost_per_request"), 5),
                    _pct(figures.get("finish_length_rate")),
                    _pct(figures.get("finish_content_filter_rate")),
                    _pct(figures.get("empty_answer_rate")),
                )
            )
    if not rows:
        return None
    table = Table(
        title=f"{info['name']}: LLM answers (~ tokens partly counted from streams)",
        title_justify="left",
    )
    for column in _COLUMNS:
        table.add_column(
            column, justify="left" if column in ("version", "role") else "right", no_wrap=True
        )
    for row in rows:
        table.add_row(*row)
    return table
