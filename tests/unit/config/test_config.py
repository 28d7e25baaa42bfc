"""The gateway config: what parses, and refusals that name the key and the value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollwise.config import is_loopback, load_config, parse_config, parse_tokens
from rollwise.domain import StickyKind
from rollwise.errors import ConfigError

BASE = Path("/srv/models")


def config(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "store": "sqlite:///state/rollwise.db",
        "models": {
            "iris": {
                "stable": "v1",
                "sticky_key": "header:X-User-Id",
                "versions": {
                    "v1": {"backend": "sklearn", "path": "iris-v1.skops"},
                    "v2": {"backend": "fake", "label": 1},
                },
            }
        },
    }
    data.update(overrides)
    return data


def test_a_complete_config_parses() -> None:
    parsed = parse_config(config(), base_dir=BASE, environ={})
    iris = parsed.models["iris"]
    assert iris.stable == "v1"
    assert iris.sticky_key is not None
    assert (iris.sticky_key.kind, iris.sticky_key.name) == (StickyKind.HEADER, "x-user-id")
    assert iris.versions["v1"].options == {"path": "iris-v1.skops"}
    assert parsed.store_url == "sqlite:////srv/models/state/rollwise.db"
    assert parsed.server.port == 8080
    assert parsed.tokens == ()


def bad_model(**changes: Any) -> dict[str, Any]:
    data = config()
    data["models"]["iris"].update(changes)
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            bad_model(stable="v9"),
            "models.iris.stable = 'v9': not one of the versions (v1, v2)",
            id="stable is not a version",
        ),
        pytest.param(
            bad_model(sticky_key="user"),
            "models.iris.sticky_key = 'user'",
            id="sticky key without kind",
        ),
        pytest.param(
            bad_model(sticky_key="query:uid"),
            "unknown kind 'query'",
            id="sticky key of unknown kind",
        ),
        pytest.param(
            bad_model(versions={"v1": {"backend": "sklern", "path": "x"}}),
            "sklern",
            id="unknown backend",
        ),
        pytest.param(
            bad_model(versions={"v1": {"backend": "sklearn"}}),
            "models.iris.versions.v1.path",
            id="backend option missing",
        ),
        pytest.param(bad_model(task="ranking"), "models.iris.task = 'ranking'", id="unknown task"),
        pytest.param(config(server={"port": 99999}), "server.port = 99999", id="port out of range"),
        pytest.param(config(servr={}), "servr: unknown key", id="misspelt section"),
        pytest.param(config(models=[]), "models", id="models not a mapping"),
        pytest.param(
            config(server={"heartbeat_interval_s": 2, "heartbeat_timeout_s": 3}),
            "server.heartbeat_timeout_s = 3 must be at least twice",
            id="heartbeat timeout shorter than two heartbeats",
        ),
        pytest.param(
            config(registration={"backends": ["skleran"]}),
            "registration.backends",
            id="unknown backend allowed for registration",
        ),
        pytest.param(
            config(models={"ir is": config()["models"]["iris"]}),
            "model name 'ir is'",
            id="model name with a space",
        ),
        pytest.param(
            config(models={"..": config()["models"]["iris"]}),
            "model name '..'",
            id="model name of dots",
        ),
        pytest.param(
            config(auth={"tokens": "ops:admin:longenough"}),
            "role 'admin'",
            id="token with an unknown role",
        ),
    ],
)
def test_bad_configs_are_refused_naming_key_and_value(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, base_dir=BASE, source="rollwise.yaml", environ={})
    assert message in str(caught.value)
    assert str(caught.value).startswith("rollwise.yaml")


def test_tokens_come_from_the_named_environment_variable() -> None:
    data = config(auth={"tokens": {"env": "MY_TOKENS"}})
    parsed = parse_config(data, base_dir=BASE, environ={"MY_TOKENS": "ops:operator:s3cret-value"})
    assert [(t.name, t.role) for t in parsed.tokens] == [("ops", "operator")]


def test_rollwise_tokens_in_the_environment_add_to_the_file() -> None:
    data = config(auth={"tokens": [{"name": "a", "role": "viewer", "secret": "secret-aaaa"}]})
    parsed = parse_config(
        data, base_dir=BASE, environ={"ROLLWISE_TOKENS": "b:operator:secret-bbbb"}
    )
    assert [t.name for t in parsed.tokens] == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("ops:operator", "must be name:role:secret", id="no secret"),
        pytest.param("ops:operator:short", "shorter than 8", id="short secret"),
    ],
)
def test_bad_token_lists_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_tokens(text, "env")


def test_a_token_secret_never_appears_in_the_refusal() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_tokens("ops:boss:super-secret-value", "env")
    assert "super-secret-value" not in str(caught.value)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        pytest.param("127.0.0.1", True, id="IPv4 loopback"),
        pytest.param("::1", True, id="IPv6 loopback"),
        pytest.param("localhost", True, id="localhost"),
        pytest.param("0.0.0.0", False, id="all interfaces"),
        pytest.param("example.internal", False, id="a host name"),
    ],
)
def test_loopback_detection(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_load_config_reads_yaml_and_resolves_paths(tmp_path: Path) -> None:
    path = tmp_path / "rollwise.yaml"
    path.write_text("models:\n  m:\n    stable: a\n    versions:\n      a: {backend: fake}\n")
    parsed = load_config(path, environ={})
    assert parsed.base_dir == tmp_path
    assert parsed.store_url == f"sqlite:///{tmp_path / 'rollwise.db'}"


def test_load_config_reads_toml(tmp_path: Path) -> None:
    path = tmp_path / "rollwise.toml"
    path.write_text('[models.m]\nstable = "a"\n[models.m.versions.a]\nbackend = "fake"\n')
    assert "m" in load_config(path, environ={}).models


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("models: [unclosed", "not valid YAML", id="broken YAML"),
        pytest.param("", "the file is empty", id="empty file"),
        pytest.param("- a\n- b\n", "top level must be a mapping", id="a list"),
    ],
)
def test_unreadable_configs_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rollwise.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


def test_a_config_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rollwise.yaml"
    path.write_bytes(b"models:\n  m\xff: {}\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path, environ={})


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("server", "controller", "settle_s"),
    [
        pytest.param({}, {}, 2.0, id="default: one routing poll and one flush"),
        pytest.param({"flush_interval_s": 5.0}, {}, 6.0, id="follows a longer flush"),
        pytest.param({}, {"settle_s": 10.0}, 10.0, id="longer when asked"),
    ],
)
def test_the_controller_settles_at_least_one_poll_and_one_flush(
    server: dict[str, float], controller: dict[str, float], settle_s: float
) -> None:
    data = config(server=server, controller=controller)
    assert parse_config(data, base_dir=BASE, environ={}).settle_s == settle_s


def test_a_settle_shorter_than_a_poll_and_a_flush_is_refused() -> None:
    data = config(controller={"settle_s": 0.5})
    with pytest.raises(ConfigError, match=r"controller.settle_s = 0.5 must be at least .* = 2"):
        parse_config(data, base_dir=BASE, environ={})


def test_a_config_without_models_serves_those_created_through_the_api() -> None:
    data = config()
    del data["models"]
    parsed = parse_config(data, base_dir=BASE, environ={})
    assert dict(parsed.models) == {}
    assert parsed.controller.unload_previous is True
    assert "python" not in parsed.registration.backends


def test_a_token_s_secret_never_shows_in_its_repr_or_a_refusal() -> None:
    data = config(auth={"tokens": [{"name": "ops", "role": "operator", "secret": "s3cret-value"}]})
    parsed = parse_config(data, base_dir=BASE, environ={})
    assert parsed.tokens[0].secret == "s3cret-value"
    assert "s3cret-value" not in repr(parsed.tokens) and "s3cret-value" not in repr(parsed)
    bad = config(auth={"tokens": [{"name": "ops", "role": "admin", "secret": "s3cret-value"}]})
    with pytest.raises(ConfigError) as refused:
        parse_config(bad, base_dir=BASE, environ={})
    assert "s3cret-value" not in str(refused.value)
