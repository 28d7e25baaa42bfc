"""examples/config/notifications.yaml is a valid ``notifications:`` section."""

from __future__ import annotations

from pathlib import Path

import yaml

from rollwise.config import parse_config

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "config" / "notifications.yaml"
MODELS = {"iris": {"stable": "v1", "versions": {"v1": {"backend": "fake", "label": 0}}}}


def test_the_example_parses_with_its_secrets_from_the_environment() -> None:
    fragment = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    environ = {
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x",
        "DEPLOY_LOG_TOKEN": "t0ken",
    }
    parsed = parse_config(
        {"models": MODELS, **fragment},
        base_dir=EXAMPLE.parent,
        source=EXAMPLE.name,
        environ=environ,
    )
    slack, log = parsed.notifications
    assert (slack.name, slack.format, slack.url) == (
        "slack-ml-alerts",
        "slack",
        environ["SLACK_WEBHOOK_URL"],
    )
    assert log.headers["Authorization"] == "Bearer t0ken"
    assert log.models == {"iris"} and log.kinds is None
