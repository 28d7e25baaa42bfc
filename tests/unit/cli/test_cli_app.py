"""The command line as one typer app: every command registered in the order --help lists
it, and the standalone controller wired to the fleet's readiness like a gateway's."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any, ClassVar

import pytest
import typer
from typer.testing import CliRunner

import rollwise.controller
from rollwise.cli import app
from rollwise.readiness import StoreReadiness

COMMANDS = [
    "serve",
    "route",
    "status",
    "reload",
    "events",
    "replicas",
    "apply",
    "rollouts",
    "watch",
    "deploy",
    "pause",
    "resume",
    "promote",
    "abort",
    "rollback",
    "controller",
    "demo",
    "example",
    "versions",
]


def test_help_lists_every_command_in_its_order() -> None:
    group = typer.main.get_group(app)
    assert group.list_commands(typer.Context(group)) == COMMANDS


def test_versions_has_add_ls_and_rm() -> None:
    group = typer.main.get_group(app)
    versions = group.get_command(typer.Context(group), "versions")
    assert isinstance(versions, typer.core.TyperGroup)
    assert versions.list_commands(typer.Context(versions)) == ["add", "ls", "rm"]


class FakeController:
    """Records how the command built it; its run() asks the readiness once and returns."""

    built: ClassVar[list[FakeController]] = []

    def __init__(self, store: Any, **settings: Any) -> None:
        self.store = store
        self.settings = settings
        self.holder = "fake-holder"
        self.asked: tuple[bool, str] | None = None
        FakeController.built.append(self)

    def run(self) -> None:
        self.asked = self.settings["readiness"]("iris", "v2")

    def stop(self) -> None:
        pass


def test_the_standalone_controller_reads_fleet_readiness_from_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "rollwise.yaml"
    config.write_text(
        "store: sqlite:///state.db\n"
        "server: {heartbeat_timeout_s: 7}\n"
        "controller: {unload_previous: false}\n"
        "models: {}\n",
        encoding="utf-8",
    )
    FakeController.built.clear()
    monkeypatch.setattr(rollwise.controller, "Controller", FakeController)
    # The command stops its loop on SIGTERM/SIGINT; the test runner keeps its own handlers.
    monkeypatch.setattr(signal, "signal", lambda *_: None)

    result = CliRunner().invoke(app, ["controller", "--config", str(config)])

    assert result.exit_code == 0, result.output
    (built,) = FakeController.built
    fleet = built.settings["fleet"]
    assert isinstance(fleet, StoreReadiness)
    assert fleet.heartbeat_timeout_s == 7
    assert built.settings["readiness"] == fleet.readiness
    assert built.settings["unload_previous"] is False
    # No replica reported the candidate: not ready, and the reason says why.
    assert built.asked is not None
    ready, why = built.asked
    assert not ready and why
    said = " ".join(result.output.split())
    assert f"controller fake-holder watching rollouts in sqlite:///{tmp_path}" in said
