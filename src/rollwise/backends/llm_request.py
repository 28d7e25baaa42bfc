"""What an ``openai`` version is asked: one OpenAI request, as the client sent it.

A pure value (no I/O), apart from the backend so that the request path and the shadows
can name it without importing the backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ROUTES", "LlmRequest"]

ROUTES = ("/chat/completions", "/completions", "/embeddings")
"""The routes below ``/v1`` an ``openai`` version answers."""


@dataclass(frozen=True, slots=True)
class LlmRequest:
    """One request to an LLM endpoint, as the client sent it (``body`` parsed)."""

    route: str
    """One of ``ROUTES``."""
    body: Mapping[str, Any]
    prompt_words: int = 0
    """Whitespace-separated words of the prompt: approximate tokens when no usage comes."""

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True

    @property
    def embeddings(self) -> bool:
        return self.route == "/embeddings"
