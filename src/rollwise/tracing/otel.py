"""Request spans with OpenTelemetry, exported over OTLP/HTTP (the ``otel`` extra).

One span per version asked per request: ``rollwise.predict`` with the model, version,
role (served, preview or shadow) and request id. A served or preview span continues the
caller's trace when the request carried a ``traceparent``; the span's own
``traceparent`` goes on to ``http`` upstreams (``rollwise.tracing.UPSTREAM_HEADERS``).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from rollwise.tracing import UPSTREAM_HEADERS
from rollwise.tracing.settings import TracingSection

T = TypeVar("T")

SPAN_NAME = "rollwise.predict"
_PROPAGATOR = TraceContextTextMapPropagator()


class OtelTracer:
    """A ``RequestTracer`` on an OpenTelemetry tracer provider of its own (never the
    global one: an embedding application keeps its own)."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("rollwise")

    async def traced(
        self,
        call: Awaitable[T],
        *,
        model: str,
        version: str,
        role: str,
        request_id: str,
        parent: str | None,
    ) -> T:
        context: Context | None = (
            _PROPAGATOR.extract({"traceparent": parent}) if parent is not None else None
        )
        kind = SpanKind.INTERNAL if role == "shadow" else SpanKind.SERVER
        attributes = {
            "rollwise.model": model,
            "rollwise.version": version,
            "rollwise.role": role,
            "rollwise.request_id": request_id,
        }
        with self._tracer.start_as_current_span(
            SPAN_NAME, context=context, kind=kind, attributes=attributes
        ):
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier)
            token = UPSTREAM_HEADERS.set(carrier or None)
            try:
                # A failure is recorded on the span (as an exception event, status
                # error) by start_as_current_span itself.
                return await call
            finally:
                UPSTREAM_HEADERS.reset(token)

    def close(self) -> None:
        self.provider.shutdown()


def build_tracer(section: TracingSection, exporter: SpanExporter | None = None) -> OtelTracer:
    """The tracer of ``section``; ``exporter`` replaces the OTLP one (tests)."""
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=section.otlp_endpoint)
    provider = TracerProvider(
        resource=Resource.create({"service.name": section.service_name}),
        sampler=ParentBased(TraceIdRatioBased(section.sample_ratio)),
    )
    # Batched in a thread of its own: a request never waits on the collector.
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return OtelTracer(provider)
