"""A span per version asked per request: its attributes, the caller's trace continued,
the traceparent handed on to upstreams, failures recorded, and sampling."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from rollwise.config import parse_config
from rollwise.errors import BackendError, ConfigError
from rollwise.tracing import UPSTREAM_HEADERS
from rollwise.tracing.otel import SPAN_NAME, OtelTracer, build_tracer
from rollwise.tracing.settings import TracingSection

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
SECTION = TracingSection(otlp_endpoint="http://127.0.0.1:4318/v1/traces")


@pytest.fixture
def exported() -> Iterator[tuple[OtelTracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tracer = build_tracer(SECTION, exporter)
    yield tracer, exporter
    tracer.close()


def spans(tracer: OtelTracer, exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    tracer.provider.force_flush()
    return list(exporter.get_finished_spans())


async def answer(value: str = "ok") -> str:
    # What an http backend would send upstream, read where it would read it.
    headers = UPSTREAM_HEADERS.get()
    return f"{value}:{headers['traceparent'] if headers else None}"


def traced(tracer: OtelTracer, role: str = "served", parent: str | None = None) -> str:
    async def main() -> str:
        return await tracer.traced(
            answer(), model="iris", version="v2", role=role, request_id="r-1", parent=parent
        )

    return asyncio.run(main())


def test_a_span_names_the_model_version_role_and_request(
    exported: tuple[OtelTracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = exported
    traced(tracer, role="preview")
    (span,) = spans(tracer, exporter)
    assert span.name == SPAN_NAME and span.kind is SpanKind.SERVER
    assert dict(span.attributes or {}) == {
        "rollwise.model": "iris",
        "rollwise.version": "v2",
        "rollwise.role": "preview",
        "rollwise.request_id": "r-1",
    }
    assert span.resource.attributes["service.name"] == "rollwise"


def test_the_callers_trace_is_continued_and_handed_on_upstream(
    exported: tuple[OtelTracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = exported
    result = traced(tracer, parent=TRACEPARENT)
    (span,) = spans(tracer, exporter)
    assert format(span.context.trace_id, "032x") == CALLER_TRACE
    assert span.parent is not None and format(span.parent.span_id, "016x") == CALLER_SPAN
    # The upstream is told this span as its parent, in the caller's trace.
    assert result == f"ok:00-{CALLER_TRACE}-{format(span.context.span_id, '016x')}-01"
    # Outside the call, nothing is handed on.
    assert UPSTREAM_HEADERS.get() is None


@pytest.mark.parametrize(
    "parent",
    [None, "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"],
    ids=["no parent", "a malformed parent", "an invalid trace id"],
)
def test_without_a_usable_parent_a_new_trace_begins(
    exported: tuple[OtelTracer, InMemorySpanExporter], parent: str | None
) -> None:
    tracer, exporter = exported
    traced(tracer, parent=parent)
    (span,) = spans(tracer, exporter)
    assert span.parent is None and span.context.trace_id != 0


def test_a_shadow_span_is_internal(exported: tuple[OtelTracer, InMemorySpanExporter]) -> None:
    tracer, exporter = exported
    traced(tracer, role="shadow")
    (span,) = spans(tracer, exporter)
    assert span.kind is SpanKind.INTERNAL


def test_a_failure_is_recorded_on_the_span_and_raised(
    exported: tuple[OtelTracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = exported

    async def failing() -> None:
        raise BackendError("version v2 failed: boom")

    async def main() -> None:
        await tracer.traced(
            failing(), model="iris", version="v2", role="served", request_id="r", parent=None
        )

    with pytest.raises(BackendError, match="boom"):
        asyncio.run(main())
    (span,) = spans(tracer, exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]
    assert UPSTREAM_HEADERS.get() is None


def test_an_unsampled_share_exports_nothing_but_a_sampled_caller_wins() -> None:
    exporter = InMemorySpanExporter()
    tracer = build_tracer(
        TracingSection(otlp_endpoint=SECTION.otlp_endpoint, sample_ratio=0), exporter
    )
    try:
        unsampled = traced(tracer)
        traced(tracer, parent=TRACEPARENT)
        (span,) = spans(tracer, exporter)
        assert format(span.context.trace_id, "032x") == CALLER_TRACE
        # Not sampled, the upstream is still told the trace, flagged as not sampled.
        assert int(unsampled.rsplit("-", 1)[1], 16) & 1 == 0
    finally:
        tracer.close()


def config(tracing: dict[str, object]) -> dict[str, object]:
    models = {"iris": {"stable": "v1", "versions": {"v1": {"backend": "fake", "label": 0}}}}
    return {"models": models, "tracing": tracing}


def test_tracing_is_off_unless_an_endpoint_is_given() -> None:
    parsed = parse_config(config({}), base_dir=Path("."), environ={})
    assert not parsed.tracing.enabled
    parsed = parse_config(
        config({"otlp_endpoint": "http://collector:4318/v1/traces", "sample_ratio": 0.1}),
        base_dir=Path("."),
        environ={},
    )
    assert parsed.tracing.enabled and parsed.tracing.sample_ratio == 0.1


@pytest.mark.parametrize(
    ("tracing", "message"),
    [
        ({"otlp_endpoint": "collector:4317"}, "tracing.otlp_endpoint = 'collector:4317': must be"),
        ({"otlp_endpoint": "http://c/v1/traces", "sample_ratio": 2}, "tracing.sample_ratio = 2"),
        ({"endpoint": "http://c"}, "tracing.endpoint = 'http://c': unknown key"),
    ],
    ids=["not a URL", "a ratio over 1", "a misspelt key"],
)
def test_a_bad_tracing_section_is_refused_naming_the_key(
    tracing: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(config(tracing), base_dir=Path("."), environ={})


def test_an_endpoint_without_the_extra_installed_is_refused_at_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("rollwise.tracing.settings.otel_installed", lambda: False)
    with pytest.raises(ConfigError, match=r"tracing needs the otel extra: pip install"):
        parse_config(
            config({"otlp_endpoint": "http://c:4318/v1/traces"}), base_dir=Path("."), environ={}
        )


def test_the_example_parses() -> None:
    example = Path(__file__).resolve().parents[3] / "examples" / "config" / "tracing.yaml"
    fragment = yaml.safe_load(example.read_text(encoding="utf-8"))
    parsed = parse_config({**config({}), **fragment}, base_dir=example.parent, environ={})
    assert parsed.tracing.enabled and parsed.tracing.sample_ratio == 0.1
