"""Versions registered at runtime through the command line, each a real ``python -m
rollwise.cli`` process against a real gateway: ``versions add`` (flags, a version file,
the same spec again, another spec under the same name, refusals of the registration
policy), ``versions ls`` and ``replicas`` (table and JSON), ``status`` with the fleet's
readiness, ``events --json``, and ``versions rm`` (refused while serving or when the
config manages the version, exit 2 with the reason; done once nothing uses it)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollwise.client import Client
from support.cli import rollwise
from support.gateway import OPERATOR, VIEWER, GatewayProcess, eventually
from support.rollouts import all_ready, example_versions, rollout_config

# The artifacts live in the config's folder: the default of registration.artifact_dirs.
ARTIFACT = "iris-v4.onnx"


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The refusal on stderr, which must be exactly one line."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    versions = example_versions(tmp_path_factory)
    directory = tmp_path_factory.mktemp("gateway")
    shutil.copy(versions["v2"]["path"], directory / ARTIFACT)
    config = rollout_config(versions, {"iris": ("v1", "v2")})
    process = GatewayProcess(directory, config).start()
    try:
        with Client(process.url, OPERATOR) as client:
            eventually(lambda: all_ready(client), timeout_s=60)
        yield process
    finally:
        process.stop()


def by_name(versions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in versions}


def table_row(output: str, first: str, second: str) -> list[str]:
    """The cells of the table row whose first two cells are ``first`` and ``second``."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells[:2] == [first, second]:
            return cells
    raise AssertionError(f"no row {first} {second} in:\n{output}")


def test_add_list_route_and_retire_a_version_without_a_restart(
    gateway: GatewayProcess, env: dict[str, str], client: Client
) -> None:
    digest = sha256_of(gateway.directory / ARTIFACT)
    add = ["versions", "add", "iris", "v4", "--backend", "onnx", "--path", ARTIFACT]

    added = rollwise(*add, "--sha256", digest, env=env)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("iris v4: registered;"), added.stdout

    # The same spec again changes nothing; another spec under that name is refused.
    again = rollwise(*add, "--sha256", digest, env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("iris v4: unchanged (already registered with this spec)")
    other = rollwise(*add, "--option", "intra_op_threads=1", env=env)
    assert other.returncode == 2, (other.stdout, other.stderr)
    assert "v4" in one_line(other)

    client.wait_ready("iris", "v4", timeout_s=60, interval_s=0.2)

    listed = rollwise("versions", "ls", "iris", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    versions = by_name(json.loads(listed.stdout))
    assert versions["v4"]["source"] == "api"
    assert versions["v4"]["backend"] == "onnx"
    assert versions["v4"]["artifact_sha256"] == digest
    assert versions["v4"]["fleet"]["everywhere"] is True
    assert [r["health"] for r in versions["v4"]["replicas"]] == ["ready"]
    assert versions["v1"]["source"] == versions["v2"]["source"] == "config"

    table = rollwise("versions", "ls", "iris", env=env)
    assert table.returncode == 0, table.stderr
    assert table_row(table.stdout, "iris", "v4") == [
        "iris",
        "v4",
        "api",
        "onnx",
        digest[:12],
        "ready on 1/1 replica",
        "1 ready",
    ]

    replicas = rollwise("replicas", "--json", env=env)
    assert replicas.returncode == 0, replicas.stderr
    fleet = json.loads(replicas.stdout)
    (replica,) = [r for r in fleet["replicas"] if r["live"]]
    assert replica["versions"]["iris/v4"] == "ready"
    assert fleet["heartbeat_timeout_s"] > 0
    shown = rollwise("replicas", env=env)
    assert shown.returncode == 0, shown.stderr
    assert str(replica["pid"]) in shown.stdout and "yes" in shown.stdout

    # The new version serves, no restart: a share of the users, then retired.
    assert rollwise("route", "iris", "v1=50", "v4=50", env=env).returncode == 0
    status = rollwise("status", "iris", env=env)
    assert status.returncode == 0, status.stderr
    assert "ready on 1/1 replica" in table_row(status.stdout, "v4", "onnx")

    serving = rollwise("versions", "rm", "iris", "v4", env=env)
    assert serving.returncode == 2, (serving.stdout, serving.stderr)
    assert "v4" in one_line(serving)
    assert serving.stdout == ""

    assert rollwise("route", "iris", "v1=100", env=env).returncode == 0
    retired = rollwise("versions", "rm", "iris", "v4", env=env)
    assert retired.returncode == 0, retired.stderr
    assert retired.stdout.strip() == "iris v4: retired"
    assert "v4" not in by_name(client.versions("iris"))

    gone = rollwise("versions", "rm", "iris", "v4", env=env)
    assert gone.returncode == 2
    one_line(gone)


def test_a_config_managed_version_is_retired_through_the_config(env: dict[str, str]) -> None:
    result = rollwise("versions", "rm", "iris", "v2", env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "remove it from the config" in one_line(result)


def test_add_from_a_version_file_naming_model_and_version(
    tmp_path: Path, env: dict[str, str], client: Client
) -> None:
    file = tmp_path / "version.yaml"
    spec = {"model": "iris", "version": "v5", "backend": "onnx", "path": ARTIFACT}
    file.write_text(yaml.safe_dump(spec), encoding="utf-8")

    added = rollwise("versions", "add", "-f", str(file), env=env)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("iris v5: registered;")
    registered = client.version("iris", "v5")
    assert (registered["source"], registered["backend"]) == ("api", "onnx")

    # The file and the arguments must agree.
    other = rollwise("versions", "add", "iris", "v6", "-f", str(file), env=env)
    assert other.returncode == 2
    assert "version 'v5' in the file, but 'v6' on the command line" in one_line(other)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["iris", "p1", "--backend", "python", "--option", "target=os:getcwd"],
            "python",
            id="a backend the policy does not allow",
        ),
        pytest.param(
            ["iris", "p2", "--backend", "onnx", "--path", "/etc/hostname"],
            "artifact_dirs",
            id="a file outside the artifact folders",
        ),
    ],
)
def test_the_registration_policy_refuses_naming_the_rule(
    env: dict[str, str], args: list[str], message: str
) -> None:
    result = rollwise("versions", "add", *args, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in one_line(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["nope", "v1", "--backend", "fake"], "nope", id="an unknown model"),
        pytest.param(["iris", "v7", "--path", ARTIFACT], "needs a backend", id="no backend"),
        pytest.param(
            ["iris", "v7", "--backend", "fake", "--option", "error_rate"],
            "expected KEY=VALUE",
            id="an option without a value",
        ),
        pytest.param(
            ["iris", "v7", "--backend", "fake", "--option", "error_rate=lots"],
            "error_rate",
            id="an option the backend refuses",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(
    env: dict[str, str], args: list[str], message: str
) -> None:
    result = rollwise("versions", "add", *args, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in one_line(result)
    assert result.stdout == ""


def test_a_viewer_lists_but_cannot_add(gateway: GatewayProcess) -> None:
    viewer = {"ROLLWISE_URL": gateway.url, "ROLLWISE_TOKEN": VIEWER}
    listed = rollwise("versions", "ls", "--json", env=viewer)
    assert listed.returncode == 0, listed.stderr
    assert {"v1", "v2"} <= {v["name"] for v in json.loads(listed.stdout) if v["model"] == "iris"}

    added = rollwise("versions", "add", "iris", "v8", "--backend", "fake", env=viewer)
    assert added.returncode == 2
    assert "needs operator" in one_line(added)


def test_events_as_one_json_array(env: dict[str, str]) -> None:
    result = rollwise("events", "iris", "--limit", "5", "--json", env=env)
    assert result.returncode == 0, result.stderr
    events = json.loads(result.stdout)
    assert isinstance(events, list) and len(events) <= 5
    assert all({"id", "kind", "message", "at_s"} <= set(e) for e in events)
