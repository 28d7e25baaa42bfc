"""The command line against a real gateway process: route, status, events, refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from rollwise.example_models import write_example
from support.cli import rollwise
from support.gateway import OPERATOR, VIEWER, GatewayProcess, free_port


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example(tmp_path_factory.mktemp("example"))


@pytest.fixture(scope="module")
def gateway(example: Path) -> Iterator[GatewayProcess]:
    config = yaml.safe_load(example.read_text())
    config["server"] = {"flush_interval_s": 0.2}
    process = GatewayProcess(example.parent, config).start()
    yield process
    process.stop()


def as_operator(gateway: GatewayProcess) -> dict[str, str]:
    return {"ROLLWISE_URL": gateway.url, "ROLLWISE_TOKEN": OPERATOR}


def test_help_lists_the_commands() -> None:
    result = rollwise("--help")
    assert result.returncode == 0
    for command in ("serve", "route", "status", "events"):
        assert command in result.stdout


def test_route_status_and_events(gateway: GatewayProcess) -> None:
    env = as_operator(gateway)
    routed = rollwise("route", "iris", "v1=90", "v2=10", "--mirror", "v3=50", env=env)
    assert routed.returncode == 0, routed.stderr
    assert "v1=90%" in routed.stdout and "mirroring v3=50%" in routed.stdout

    status = rollwise("status", env=env)
    assert status.returncode == 0, status.stderr
    rows = {line.split("│")[1].strip(): line for line in status.stdout.splitlines() if "│" in line}
    assert "90%" in rows["v1"] and "10%" in rows["v2"] and "50%" in rows["v3"]

    events = rollwise("events", "iris", env=env)
    assert events.returncode == 0, events.stderr
    assert "routing.changed" in events.stdout
    assert "weights v1=90, v2=10; mirror v3=50" in events.stdout


def test_status_as_json(gateway: GatewayProcess) -> None:
    result = rollwise("status", "iris", "--json", env=as_operator(gateway))
    assert result.returncode == 0, result.stderr
    assert '"name": "iris"' in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["route", "iris", "v1=90", "v2=20"], "weights must sum to 100, got 110", id="bad sum"
        ),
        pytest.param(["route", "iris", "v1=all"], "is not a whole number", id="not a number"),
        pytest.param(["route", "nope", "v1=100"], "unknown model 'nope'", id="unknown model"),
        pytest.param(["route", "iris", "v9=100"], "no version 'v9'", id="unknown version"),
    ],
)
def test_refusals_are_one_clear_line_and_exit_2(
    gateway: GatewayProcess, args: list[str], message: str
) -> None:
    result = rollwise(*args, env=as_operator(gateway))
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_viewer_cannot_route(gateway: GatewayProcess) -> None:
    result = rollwise(
        "route", "iris", "v1=100", env={"ROLLWISE_URL": gateway.url, "ROLLWISE_TOKEN": VIEWER}
    )
    assert result.returncode == 2
    assert "needs operator" in result.stderr


def test_an_unreachable_gateway_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = rollwise("status", env={"ROLLWISE_URL": url, "ROLLWISE_TOKEN": OPERATOR})
    assert result.returncode == 1
    assert f"cannot reach rollwise at {url}" in result.stderr


def test_serve_refuses_a_bad_config_naming_key_and_value(example: Path, tmp_path: Path) -> None:
    config = yaml.safe_load(example.read_text())
    config["models"]["iris"]["stable"] = "v7"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = rollwise("serve", "--config", str(bad), "--port", str(free_port()))
    assert result.returncode == 2
    assert "models.iris.stable = 'v7': not one of the versions" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_insecure_dev_is_refused_off_loopback(example: Path) -> None:
    result = rollwise("serve", "--config", str(example), "--host", "0.0.0.0", "--insecure-dev")
    assert result.returncode == 2
    assert "--insecure-dev only works on a loopback address" in result.stderr


def test_reload_puts_a_version_back_into_service(gateway: GatewayProcess) -> None:
    result = rollwise("reload", "iris", "v2", env=as_operator(gateway))
    assert result.returncode == 0, result.stderr
    assert "iris v2: ready" in result.stdout
    missing = rollwise("reload", "iris", "v9", env=as_operator(gateway))
    assert missing.returncode == 2
    assert "no version 'v9'" in missing.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["route", "iris"], "Missing argument", id="missing weights"),
        pytest.param(["nosuch"], "No such command", id="unknown command"),
        pytest.param(["status", "--window", "abc"], "Invalid value", id="bad option value"),
        pytest.param(["serve", "--port", "99999"], "Invalid value", id="port out of range"),
    ],
)
def test_usage_errors_say_what_is_wrong_without_a_traceback(args: list[str], message: str) -> None:
    result = rollwise(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
