"""Traces of data-plane requests: what the request path needs of them, without
importing OpenTelemetry (the ``otel`` extra, loaded by ``rollwise.tracing.otel`` only
when ``tracing.otlp_endpoint`` is configured).

Untraced, the request path pays one ``is None`` check (``Serving.tracer``) and an
``http`` backend one context-variable read. Traced, ``RequestTracer.traced`` runs the
version's call inside a span and sets ``UPSTREAM_HEADERS`` to the ``traceparent`` that
an ``http`` backend sends on, so that the model server's spans join the request's trace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from contextvars import ContextVar
from typing import Protocol, TypeVar

T = TypeVar("T")

UPSTREAM_HEADERS: ContextVar[Mapping[str, str] | None] = ContextVar(
    "rollwise_upstream_trace_headers", default=None
)
"""Trace headers (``traceparent``) for the upstream call of the version being asked;
None outside a traced call."""


class RequestTracer(Protocol):
    """Runs one version's answer to one request inside a span of its own."""

    def traced(
        self,
        call: Awaitable[T],
        *,
        model: str,
        version: str,
        role: str,
        request_id: str,
        parent: str | None,
    ) -> Awaitable[T]:
        """``call`` awaited in a span; ``parent`` is the caller's ``traceparent``."""
        ...

    def close(self) -> None:
        """Export what is buffered and stop."""
        ...
