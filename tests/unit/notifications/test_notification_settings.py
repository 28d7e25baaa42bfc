"""The ``notifications:`` config section: what parses, and refusals naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollwise.config import parse_config
from rollwise.errors import ConfigError

BASE = Path("/srv")


def config(*targets: dict[str, Any]) -> dict[str, Any]:
    return {
        "models": {"iris": {"stable": "v1", "versions": {"v1": {"backend": "fake", "label": 0}}}},
        "notifications": list(targets),
    }


def test_no_section_means_no_targets() -> None:
    parsed = parse_config(config(), base_dir=BASE, environ={})
    assert parsed.notifications == ()


def test_a_target_resolves_its_filters_and_its_secrets_from_the_environment() -> None:
    parsed = parse_config(
        config(
            {
                "url": {"env": "SLACK_URL"},
                "format": "slack",
                "events": ["rolled_back", "step"],
                "models": ["iris"],
                "headers": {
                    "Authorization": {"env": "HOOK_TOKEN", "prefix": "Bearer "},
                    "X-Team": "ml",
                },
                "timeout_s": 2,
            }
        ),
        base_dir=BASE,
        environ={"SLACK_URL": "https://hooks.slack.test/T/B/secret", "HOOK_TOKEN": "tok"},
    )
    (target,) = parsed.notifications
    assert target.name == "hooks.slack.test"
    assert target.url == "https://hooks.slack.test/T/B/secret"
    assert target.format == "slack"
    assert target.kinds == {"rollout.rolled_back", "rollout.step", "rollout.step_skipped"}
    assert target.models == {"iris"}
    assert target.headers == {"Authorization": "Bearer tok", "X-Team": "ml"}
    assert target.timeout_s == 2
    assert "secret" not in repr(parsed) and "tok" not in repr(target)


def test_targets_on_one_host_get_numbered_names() -> None:
    parsed = parse_config(
        config({"url": "http://127.0.0.1:9/a"}, {"url": "http://127.0.0.1:9/b"}),
        base_dir=BASE,
        environ={},
    )
    assert [t.name for t in parsed.notifications] == ["127.0.0.1", "127.0.0.1#1"]


REFUSALS = [
    pytest.param(
        {"url": "http://x/h", "events": ["rolledback"]},
        "notifications.0.events: unknown event 'rolledback'; expected some of started, step, "
        "paused, resumed, promoted, rolled_back, failed, validated, experiment_decided",
        id="an unknown event names the valid ones",
    ),
    pytest.param(
        {"url": "ftp://x/h"},
        "notifications[0].url = 'ftp://x/h': must be an http:// or https:// URL",
        id="a URL that is not http",
    ),
    pytest.param(
        {"url": {"env": "NOT_SET"}},
        "notifications[0].url: environment variable NOT_SET is not set",
        id="a URL from an unset variable",
    ),
    pytest.param(
        {"url": {"env": "BAD_URL"}},
        "notifications[0].url: must be an http:// or https:// URL",
        id="a bad URL from the environment is not echoed",
    ),
    pytest.param(
        {"url": "http://x/h", "headers": {"Authorization": {"env": "NOT_SET"}}},
        "notifications[0].headers.Authorization: environment variable NOT_SET is not set",
        id="a header from an unset variable",
    ),
    pytest.param(
        {"url": "http://x/h", "format": "teams"},
        "notifications.0.format = 'teams': Input should be 'json' or 'slack'",
        id="an unknown format",
    ),
    pytest.param(
        {"url": "http://x/h", "timeout_s": 0},
        "notifications.0.timeout_s = 0: Input should be greater than 0",
        id="no time to answer",
    ),
    pytest.param(
        {"url": "http://x/h", "retry": 3},
        "notifications.0.retry = 3: unknown key",
        id="a misspelt key",
    ),
]


@pytest.mark.parametrize(("target", "message"), REFUSALS)
def test_a_bad_target_is_refused_naming_the_key(target: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(config(target), base_dir=BASE, environ={"BAD_URL": "secret-not-a-url"})
    assert message in str(refused.value)
    assert "secret-not-a-url" not in str(refused.value)


def test_two_targets_may_not_share_a_name() -> None:
    with pytest.raises(ConfigError, match=r"notifications\[1\].name = 'ops': another target"):
        parse_config(
            config({"url": "http://a/h", "name": "ops"}, {"url": "http://b/h", "name": "ops"}),
            base_dir=BASE,
            environ={},
        )
