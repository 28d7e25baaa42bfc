"""The CI examples in examples/ci/ stay usable: the rollout and version files parse as
``rollwise deploy`` reads them, the shell script is valid POSIX shell, and the workflow
runs ``rollwise deploy --json`` and acts on every exit code of the table."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollwise.cli import version_request
from rollwise.exits import EXIT_CODES
from rollwise.rollout import parse_rollout_spec

CI = Path(__file__).resolve().parents[3] / "examples" / "ci"


def load(name: str) -> Any:
    return yaml.safe_load((CI / name).read_text(encoding="utf-8"))


def test_the_rollout_parses_and_promotes() -> None:
    spec = parse_rollout_spec(load("rollout.yaml"), where="rollout.yaml")

    assert (spec.model, spec.strategy.value) == ("iris", "canary")
    assert spec.promotes


def test_the_version_file_takes_model_and_version_from_the_rollout() -> None:
    rollout = load("rollout.yaml")

    request = version_request(
        load("version.yaml"),
        source="version.yaml",
        model=rollout["model"],
        name=rollout["candidate"],
        origin="in the rollout spec",
    )

    assert (request.model, request.name) == ("iris", "v4")
    assert request.spec["backend"] == "onnx"
    assert len(request.spec["sha256"]) == 64 and request.spec["url"].startswith("https://")


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell here")
def test_the_deploy_script_is_valid_posix_shell() -> None:
    result = subprocess.run(["sh", "-n", str(CI / "deploy.sh")], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", ["deploy.sh", "github-actions.yml"])
def test_the_ci_examples_run_deploy_and_handle_every_exit_code(name: str) -> None:
    text = (CI / name).read_text(encoding="utf-8")

    assert "rollwise deploy -f" in text and "--json" in text
    for code in sorted(set(EXIT_CODES.values()) - {1}):
        assert f"{code})" in text, f"{name} does not handle exit code {code}"
    assert "*)" in text, f"{name} does not handle the other exit codes"


def test_the_workflow_is_valid_yaml_with_the_secrets_it_needs() -> None:
    workflow = load("github-actions.yml")
    steps = workflow["jobs"]["deploy"]["steps"]
    text = (CI / "github-actions.yml").read_text(encoding="utf-8")

    assert any("rollwise deploy" in str(step.get("run", "")) for step in steps)
    assert "${{ secrets.ROLLWISE_URL }}" in text and "${{ secrets.ROLLWISE_TOKEN }}" in text
