"""The ``providers:`` section of the gateway config: defaults for external gates.

```yaml
providers:
  prometheus:
    url: http://prometheus:9090      # used by prometheus gates without an address
    timeout_s: 5                     # per query; a gate's own timeout_s wins
    headers: {X-Scope-OrgID: team-a} # sent with every query (no secrets here)
    bearer_token_env: PROM_TOKEN     # "Authorization: Bearer $PROM_TOKEN", read from env
```
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class PrometheusSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = None
    timeout_s: float = Field(5.0, gt=0, le=60)
    headers: dict[str, str] = Field(default_factory=dict)
    bearer_token_env: str | None = Field(None, min_length=1)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")


class ProvidersSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)  # type: ignore[arg-type]
