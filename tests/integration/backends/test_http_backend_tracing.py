"""A traced request's ``traceparent`` reaches the model server behind an ``http``
version, so that its spans join the request's trace; untraced, nothing is added."""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oip_servers import OipTestServer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rollwise.backends.base import InferenceRequest, Tensor
from rollwise.backends.http import HttpBackend
from rollwise.tracing.otel import build_tracer
from rollwise.tracing.settings import TracingSection

Run = Callable[[Coroutine[Any, Any, None]], None]
CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def request() -> InferenceRequest:
    return InferenceRequest(inputs=(Tensor("features", (1, 4), "FP64", [1.0, 2, 3, 4]),))


def test_the_span_is_handed_on_to_the_model_server(run: Run) -> None:
    exporter = InMemorySpanExporter()
    tracer = build_tracer(TracingSection(otlp_endpoint="http://127.0.0.1:9/v1/traces"), exporter)

    async def main() -> None:
        async with OipTestServer() as server:
            backend = HttpBackend("v3", {"url": server.url, "model": "iris"}, Path("."))
            await backend.load()
            await tracer.traced(
                backend.predict(request()),
                model="iris",
                version="v3",
                role="served",
                request_id="r-1",
                parent=CALLER,
            )
            # The next request is not traced: it goes out as before, with no traceparent.
            await backend.predict(request())
            await backend.close()
            traced, untraced = server.received[-2:]
            tracer.provider.force_flush()
            (span,) = exporter.get_finished_spans()
            span_id = format(span.context.span_id, "016x")
            assert traced.headers["traceparent"] == (
                f"00-4bf92f3577b34da6a3ce929d0e0e4736-{span_id}-01"
            )
            assert "traceparent" not in untraced.headers

    try:
        run(main())
    finally:
        tracer.close()
