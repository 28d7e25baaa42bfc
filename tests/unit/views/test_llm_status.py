"""The LLM table of ``rollwise status``, from the control API's model JSON."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from rollwise.llm_status import llm_table


def version(
    name: str, served: dict[str, Any] | None, shadow: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"name": name, "served": served, "shadow": shadow}


def render(info: dict[str, Any]) -> str:
    table = llm_table(info)
    assert table is not None
    console = Console(width=220, record=True)
    console.print(table)
    return console.export_text()


def test_a_model_without_llm_answers_has_no_llm_table() -> None:
    info = {"name": "iris", "versions": [version("v1", {"requests": 3}, None)]}
    assert llm_table(info) is None


def test_each_version_and_role_with_llm_answers_is_a_line() -> None:
    served = {
        "llm_answers": 4,
        "ttft_p50_ms": 12.5,
        "ttft_p95_ms": 40.0,
        "itl_mean_ms": 3.25,
        "tokens_per_s": 80.0,
        "prompt_tokens": 20,
        "completion_tokens": 30,
        "tokens_estimated": 1,
        "cost_per_request": 0.00125,
        "finish_length_rate": 0.25,
        "finish_content_filter_rate": 0.0,
        "empty_answer_rate": 0.0,
    }
    info = {
        "name": "chat",
        "versions": [version("v1", served), version("v2", None, {"llm_answers": 2})],
    }
    text = render(info)
    assert "chat: LLM answers" in text
    line = next(row for row in text.splitlines() if row.lstrip("│ ").startswith("v1"))
    assert "40.00" in line and "~30" in line and "25.00%" in line and "0.00125" in line
    assert any(row.lstrip("│ ").startswith("v2") and "shadow" in row for row in text.splitlines())
