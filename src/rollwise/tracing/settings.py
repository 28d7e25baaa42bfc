"""The ``tracing:`` section of the gateway config, checked at load: an OTLP endpoint
needs the ``otel`` extra installed, and is refused at load when it is not."""

from __future__ import annotations

import importlib.util
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

OTEL_MODULES = (
    "opentelemetry.sdk.trace",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
)


class TracingSection(BaseModel):
    """Where spans of data-plane requests go; off unless ``otlp_endpoint`` is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    otlp_endpoint: str | None = None
    """The OTLP/HTTP traces endpoint, e.g. ``http://127.0.0.1:4318/v1/traces``."""
    sample_ratio: float = Field(1.0, ge=0, le=1)
    """Share of requests traced that come without a sampled parent; a caller's
    ``traceparent`` decides for its own requests."""
    service_name: str = Field("rollwise", min_length=1)

    @field_validator("otlp_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL (OTLP over HTTP)")
        if not otel_installed():
            raise ValueError(
                "tracing needs the otel extra: pip install 'rollwise[otel]' "
                "(opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http)"
            )
        return value

    @property
    def enabled(self) -> bool:
        return self.otlp_endpoint is not None


def otel_installed() -> bool:
    try:
        return all(importlib.util.find_spec(name) is not None for name in OTEL_MODULES)
    except ModuleNotFoundError:
        return False
