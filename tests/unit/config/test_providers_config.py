"""The ``providers:`` section of the gateway config (defaults for external gates)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rollwise.config import parse_config
from rollwise.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "config" / "providers.yaml"
BASE = Path("/srv/models")


def _config(providers: Any) -> dict[str, Any]:
    return {
        "models": {"iris": {"stable": "a", "versions": {"a": {"backend": "fake"}}}},
        "providers": providers,
    }


def test_without_the_section_no_prometheus_is_configured() -> None:
    parsed = parse_config({"models": {}}, base_dir=BASE, environ={})

    assert parsed.providers.prometheus.url is None
    assert parsed.providers.prometheus.timeout_s == 5.0


def test_the_example_fragment_is_a_valid_providers_section() -> None:
    section = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["providers"]

    parsed = parse_config(_config(section), base_dir=BASE, environ={"PROMETHEUS_TOKEN": "t0ken"})

    assert parsed.providers.prometheus.url == "http://prometheus:9090"
    assert parsed.providers.prometheus.headers == {"X-Scope-OrgID": "ml"}


@pytest.mark.parametrize(
    ("prometheus", "words"),
    [
        pytest.param({"url": "prometheus:9090"}, "http:// or https://", id="a url without scheme"),
        pytest.param({"url": "http://p", "timeout_s": 0}, "timeout_s", id="a zero timeout"),
        pytest.param({"url": "http://p", "timeout_s": 120}, "timeout_s", id="a long timeout"),
        pytest.param({"url": "http://p", "token": "x"}, "token", id="an unknown key"),
        pytest.param(
            {"url": "http://p", "bearer_token_env": "UNSET_PROM_TOKEN"},
            "providers.prometheus.bearer_token_env = 'UNSET_PROM_TOKEN'",
            id="an unset token variable",
        ),
    ],
)
def test_a_bad_providers_section_is_refused_naming_the_key(
    prometheus: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigError, match=r"rollwise\.yaml") as error:
        parse_config(
            _config({"prometheus": prometheus}), base_dir=BASE, source="rollwise.yaml", environ={}
        )

    assert words in str(error.value)
    assert "prometheus" in str(error.value)
