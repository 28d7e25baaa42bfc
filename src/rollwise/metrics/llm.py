"""What one answer of an LLM endpoint measured: time to first token, tokens, cost.

Pure: the caller passes the times (``time.perf_counter`` in ms since the request went
out) and the bytes; nothing here reads a clock or a socket.

- ``StreamMeter`` reads an answer streamed as server-sent events chunk by chunk, as the
  bytes come (events split across chunks included), without holding the stream: it keeps
  only the current unfinished line (bounded) and the answer's text (bounded);
- ``answer_usage`` reads a whole (non-streamed) JSON answer;
- ``record_llm`` adds one ``LlmUsage`` to a ``VersionWindow``.

Tokens come from the answer's ``usage`` when the upstream sends it (non-streamed answers
always do in the OpenAI protocol; streamed ones only with ``stream_options:
{include_usage: true}``). Without it they are *approximated*: completion tokens as the
number of content chunks (servers send about one token per chunk) and prompt tokens as
the number of whitespace-separated words of the prompt; ``estimated`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "MAX_TEXT_CHARS",
    "LlmUsage",
    "Prices",
    "StreamMeter",
    "answer_usage",
    "prompt_words",
    "record_llm",
]

MAX_TEXT_CHARS = 16 * 1024
"""The most of an answer's text kept (for the prediction log and text comparators)."""
_MAX_LINE_BYTES = 1024 * 1024
"""An unfinished SSE line longer than this is not a protocol event: parsing stops."""


@dataclass(frozen=True, slots=True)
class Prices:
    """A version's prices, per 1,000 tokens (any currency, the same for all versions)."""

    per_1k_prompt: float = 0.0
    per_1k_completion: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.per_1k_prompt + completion_tokens * self.per_1k_completion
        ) / 1000.0


@dataclass(frozen=True, slots=True)
class LlmUsage:
    """One answered LLM request, as measured at the gateway."""

    ttft_ms: float
    """Until the first content chunk (streamed); the whole latency otherwise."""
    total_ms: float
    itl_ms: float | None
    """Mean time between content chunks after the first; None with fewer than two."""
    prompt_tokens: int
    completion_tokens: int
    estimated: bool
    """Tokens approximated from the stream (no ``usage`` in the answer)."""
    finish_reason: str | None
    text: str
    """The answer's text (first choice), at most ``MAX_TEXT_CHARS``."""
    cost: float = 0.0
    generates_text: bool = True
    """False for embeddings: no text, no finish reason, never "empty"."""

    @property
    def tokens_per_s(self) -> float:
        """Completion tokens per second of the whole request (end to end)."""
        return self.completion_tokens / (self.total_ms / 1000.0) if self.total_ms > 0 else 0.0


def prompt_words(body: dict[str, Any]) -> int:
    """Whitespace-separated words of a request's prompt: the approximate prompt tokens."""
    words = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                words += len(content.split())
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        words += len(part["text"].split())
    prompt = body.get("prompt", body.get("input"))
    if isinstance(prompt, str):
        words += len(prompt.split())
    elif isinstance(prompt, list):
        words += sum(len(p.split()) for p in prompt if isinstance(p, str))
    return words


def _choice_text(choice: dict[str, Any]) -> str:
    """The text of one choice: chat (``message``/``delta``) or completions (``text``)."""
    for key in ("delta", "message"):
        part = choice.get(key)
        if isinstance(part, dict):
            content = part.get("content")
            return content if isinstance(content, str) else ""
    text = choice.get("text")
    return text if isinstance(text, str) else ""


def _tokens(usage: Any, key: str) -> int | None:
    if isinstance(usage, dict):
        value = usage.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


class StreamMeter:
    """Measures a streamed answer from its SSE bytes, fed as they pass through."""

    __slots__ = (
        "_broken",
        "_chunks",
        "_completion_tokens",
        "_finish",
        "_first_ms",
        "_last_ms",
        "_line",
        "_parts",
        "_prompt_tokens",
        "_size",
    )

    def __init__(self) -> None:
        self._line = b""
        self._broken = False
        self._chunks = 0
        self._first_ms: float | None = None
        self._last_ms: float | None = None
        self._finish: str | None = None
        self._parts: list[str] = []
        self._size = 0
        self._prompt_tokens: int | None = None
        self._completion_tokens: int | None = None

    def feed(self, data: bytes, at_ms: float) -> None:
        """Bytes of the stream that arrived ``at_ms`` after the request went out."""
        if self._broken:
            return
        lines = (self._line + data).split(b"\n")
        self._line = lines.pop()
        if len(self._line) > _MAX_LINE_BYTES:
            self._broken = True
            self._line = b""
        for line in lines:
            if line.startswith(b"data:"):
                self._event(line[5:].strip(), at_ms)

    def _event(self, payload: bytes, at_ms: float) -> None:
        if not payload or payload == b"[DONE]":
            return
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if not isinstance(event, dict):
            return
        usage = event.get("usage")
        prompt, completion = _tokens(usage, "prompt_tokens"), _tokens(usage, "completion_tokens")
        if prompt is not None:
            self._prompt_tokens = prompt
        if completion is not None:
            self._completion_tokens = completion
        choices = event.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        text = _choice_text(choice)
        if text:
            self._chunks += 1
            if self._first_ms is None:
                self._first_ms = at_ms
            self._last_ms = at_ms
            if self._size < MAX_TEXT_CHARS:
                self._parts.append(text[: MAX_TEXT_CHARS - self._size])
                self._size += len(self._parts[-1])
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            self._finish = reason

    def usage(self, total_ms: float, prompt_estimate: int, prices: Prices) -> LlmUsage:
        """The measures of the whole stream, once it has ended after ``total_ms``."""
        itl = None
        if self._chunks >= 2 and self._first_ms is not None and self._last_ms is not None:
            itl = (self._last_ms - self._first_ms) / (self._chunks - 1)
        estimated = self._prompt_tokens is None or self._completion_tokens is None
        prompt = self._prompt_tokens if self._prompt_tokens is not None else prompt_estimate
        completion = (
            self._completion_tokens if self._completion_tokens is not None else self._chunks
        )
        return LlmUsage(
            ttft_ms=self._first_ms if self._first_ms is not None else total_ms,
            total_ms=total_ms,
            itl_ms=itl,
            prompt_tokens=prompt,
            completion_tokens=completion,
            estimated=estimated,
            finish_reason=self._finish,
            text="".join(self._parts),
            cost=prices.cost(prompt, completion),
        )


def answer_usage(
    body: bytes, total_ms: float, prompt_estimate: int, prices: Prices, *, embeddings: bool
) -> LlmUsage:
    """The measures of a whole JSON answer that took ``total_ms``."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        data = {}
    usage = data.get("usage")
    prompt = _tokens(usage, "prompt_tokens")
    completion = _tokens(usage, "completion_tokens")
    text = ""
    finish: str | None = None
    choices = data.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        text = _choice_text(choices[0])[:MAX_TEXT_CHARS]
        reason = choices[0].get("finish_reason")
        finish = reason if isinstance(reason, str) else None
    if embeddings:
        completion = 0 if completion is None else completion
    estimated = prompt is None or completion is None
    prompt_tokens = prompt if prompt is not None else prompt_estimate
    completion_tokens = completion if completion is not None else len(text.split())
    return LlmUsage(
        ttft_ms=total_ms,
        total_ms=total_ms,
        itl_ms=None,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        estimated=estimated,
        finish_reason=finish,
        text=text,
        cost=prices.cost(prompt_tokens, completion_tokens),
        generates_text=not embeddings,
    )


def record_llm(window: Any, usage: LlmUsage) -> None:
    """Add one answered LLM request to ``window`` (a ``VersionWindow``)."""
    window.llm_answers += 1
    window.ttft_ms.record(usage.ttft_ms)
    window.ttft_sum_ms += usage.ttft_ms
    if usage.itl_ms is not None:
        window.itl_requests += 1
        window.itl_sum_ms += usage.itl_ms
        window.itl_sq_sum_ms += usage.itl_ms * usage.itl_ms
    window.prompt_tokens += usage.prompt_tokens
    window.completion_tokens += usage.completion_tokens
    window.tokens_estimated += usage.estimated
    rate = usage.tokens_per_s
    window.tokens_per_s_sum += rate
    window.tokens_per_s_sq_sum += rate * rate
    window.cost_sum += usage.cost
    window.cost_sq_sum += usage.cost * usage.cost
    if usage.generates_text:
        window.finish_length += usage.finish_reason == "length"
        window.finish_content_filter += usage.finish_reason == "content_filter"
        window.empty_answers += not usage.text.strip()
