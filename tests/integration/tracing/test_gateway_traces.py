"""A real gateway with tracing configured exports a span per request over OTLP/HTTP to
a collector on loopback: the caller's trace continued, with the model, version, role
and request id; a request without a traceparent starts a trace of its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from support.gateway import GatewayProcess, eventually
from support.notify_receiver import Receiver
from support.rollouts import SERVER, operator_headers

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def collector() -> Iterator[Receiver]:
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, collector: Receiver
) -> Iterator[GatewayProcess]:
    config: dict[str, Any] = {
        "store": "sqlite:///state.db",
        "server": dict(SERVER),
        "models": {
            "traced": {
                "stable": "a",
                "versions": {
                    "a": {"backend": "fake", "label": 0},
                    "b": {"backend": "fake", "label": 1},
                },
            }
        },
        "tracing": {"otlp_endpoint": f"{collector.url}/v1/traces", "service_name": "gw-test"},
    }
    process = GatewayProcess(tmp_path_factory.mktemp("gateway"), config)
    with pytest.MonkeyPatch.context() as patch:
        # Export within a fifth of a second rather than the SDK's default 5 s.
        patch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
        process.start()
    try:
        yield process
    finally:
        process.stop()


def exported(collector: Receiver) -> dict[str, tuple[Span, str]]:
    """Every span received, by its request id, with its service's name."""
    found: dict[str, tuple[Span, str]] = {}
    for body in collector.bodies("/v1/traces"):
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                for span in scope.spans:
                    mine = {a.key: a.value.string_value for a in span.attributes}
                    found[mine["rollwise.request_id"]] = (span, attrs["service.name"])
    return found


def attributes(span: Span) -> dict[str, str]:
    return {a.key: a.value.string_value for a in span.attributes}


def predict(gateway: GatewayProcess, request_id: str, **headers: str) -> httpx.Response:
    response = httpx.post(
        f"{gateway.url}/models/traced/predict",
        json={"inputs": [[5.1, 3.5, 1.4, 0.2]]},
        headers={"x-request-id": request_id, **headers},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response


def test_a_served_request_continues_the_callers_trace(
    gateway: GatewayProcess, collector: Receiver
) -> None:
    predict(gateway, "req-served", traceparent=f"00-{TRACE}-{PARENT}-01")
    eventually(lambda: "req-served" in exported(collector))
    span, service = exported(collector)["req-served"]
    assert service == "gw-test"
    assert (span.trace_id.hex(), span.parent_span_id.hex()) == (TRACE, PARENT)
    assert span.name == "rollwise.predict" and span.kind == Span.SPAN_KIND_SERVER
    assert attributes(span) == {
        "rollwise.model": "traced",
        "rollwise.version": "a",
        "rollwise.role": "served",
        "rollwise.request_id": "req-served",
    }


def test_a_preview_is_traced_as_one_and_no_parent_starts_a_new_trace(
    gateway: GatewayProcess, collector: Receiver
) -> None:
    predict(gateway, "req-preview", **operator_headers("b"))
    eventually(lambda: "req-preview" in exported(collector))
    span, _ = exported(collector)["req-preview"]
    assert attributes(span)["rollwise.role"] == "preview"
    assert attributes(span)["rollwise.version"] == "b"
    assert span.parent_span_id == b"" and span.trace_id.hex() != TRACE
