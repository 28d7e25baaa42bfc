"""The rollout commands of the command line, each a real ``python -m rollwise.cli``
process against a real gateway: apply (and --dry-run), rollouts, pause, resume,
promote --full, watch to the end, refusals of a bad spec file, and the demo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollwise.client import Client
from support.cli import rollwise
from support.gateway import OPERATOR, GatewayProcess, eventually
from support.rollouts import (
    all_ready,
    example_versions,
    rollout_config,
    rollout_events,
    wait_for_routing,
    wait_for_step,
)

MODELS = {name: ("v1", "v2") for name in ("cli", "watched", "undecided", "abtested")}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    versions = example_versions(tmp_path_factory)
    config = rollout_config(versions, MODELS)
    process = GatewayProcess(tmp_path_factory.mktemp("gateway"), config).start()
    try:
        with Client(process.url, OPERATOR) as client:
            eventually(lambda: all_ready(client), timeout_s=60)
        yield process
    finally:
        process.stop()


def write_spec(path: Path, spec: dict[str, Any], comment: str = "") -> Path:
    text = (f"# {comment}\n" if comment else "") + yaml.safe_dump(spec, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


CANARY = {
    "model": "cli",
    "candidate": "v2",
    "strategy": "canary",
    "description": "v2 to a few users, then more",
    "canary": {"weights": [10, 50], "pause_s": 60},
}


def test_apply_dry_run_rollouts_pause_resume_and_promote_full(
    tmp_path: Path, env: dict[str, str], client: Client
) -> None:
    file = write_spec(tmp_path / "canary.yaml", CANARY, "a canary held a minute per step")

    dry = rollwise("apply", "-f", str(file), "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0] == "canary of cli to v2: valid, 5 steps"
    assert lines[1:6] == [
        "  1. set weight 10 %",
        "  2. pause 60 s",
        "  3. set weight 50 %",
        "  4. pause 60 s",
        "  5. set weight 100 %",
    ]
    # The example's v1 (scikit-learn) and v2 (ONNX) differ in ways callers do not see:
    # shown, not refused.
    assert lines[6] == "interface of v2 against v1:"
    assert all(line.startswith("  ") for line in lines[7:]) and len(lines) > 7
    # A dry run changes nothing.
    assert client.rollouts("cli") == []

    applied = rollwise("apply", "-f", str(file), env=env)
    assert applied.returncode == 0, applied.stderr
    assert "of cli started: canary v1 → v2 (5 steps)" in applied.stdout
    assert "rollwise watch cli" in applied.stdout
    wait_for_routing(client, "cli", "v1", {"v1": 90, "v2": 10})

    listed = rollwise("rollouts", "--active", env=env)
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if "│ cli " in line]
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[1:8] == ["cli", "canary", "progressing", "2/5", "v1", "v2", "90/10"]

    paused = rollwise("pause", "cli", "-r", "holiday traffic", env=env)
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.strip() == "cli: paused — paused by ops (holiday traffic)"
    assert client.rollout("cli")["status"]["phase"] == "paused"

    resumed = rollwise("resume", "cli", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "cli: progressing — resumed by ops"

    promoted = rollwise("promote", "cli", "--full", "-r", "urgent fix", env=env)
    assert promoted.returncode == 0, promoted.stderr
    assert promoted.stdout.strip() == "cli: promoted — promoted: fully promoted by ops (urgent fix)"
    wait_for_routing(client, "cli", "v2", {"v2": 100})

    ended = rollwise("rollouts", "cli", env=env)
    assert ended.returncode == 0, ended.stderr
    assert "promoted" in ended.stdout
    assert [e["kind"] for e in rollout_events(client, "cli")][-4:] == [
        "rollout.step",
        "rollout.paused",
        "rollout.resumed",
        "rollout.promoted",
    ]

    # A command that does not fit the phase is refused with one line saying why.
    again = rollwise("pause", "cli", env=env)
    assert again.returncode == 2
    assert "has ended (promoted)" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1, again.stderr


def test_watch_follows_a_promoted_rollout_and_exits_0(
    tmp_path: Path, env: dict[str, str], client: Client
) -> None:
    spec = {
        "model": "watched",
        "candidate": "v2",
        "strategy": "steps",
        "steps": [{"set_weight": 50}, {"pause": {"duration_s": 1}}],
    }
    file = write_spec(tmp_path / "steps.yaml", spec)
    assert rollwise("apply", "-f", str(file), env=env).returncode == 0
    watched = rollwise("watch", "watched", "--interval", "0.2", env=env, timeout_s=60)
    assert watched.returncode == 0, watched.stderr
    assert "promoted" in watched.stdout
    assert client.rollout("watched")["status"]["phase"] == "promoted"


def test_watch_exits_3_when_the_rollout_is_rolled_back(
    tmp_path: Path, env: dict[str, str], client: Client
) -> None:
    # Without traffic the analysis cannot decide; past its limit it rolls back.
    spec = {
        "model": "undecided",
        "candidate": "v2",
        "strategy": "steps",
        "steps": [{"set_weight": 10}, {"analyze": {"max_duration_s": 1}}],
        "gates": [{"metric": "error_rate", "max_increase": 0.01}],
    }
    file = write_spec(tmp_path / "undecided.yaml", spec)
    assert rollwise("apply", "-f", str(file), env=env).returncode == 0
    wait_for_step(client, "undecided", 1)
    watched = rollwise("watch", "undecided", "--interval", "0.2", env=env, timeout_s=60)
    assert watched.returncode == 3, (watched.stdout, watched.stderr)
    assert "rolled back" in watched.stdout
    status = client.rollout("undecided")["status"]
    assert status["phase"] == "rolled_back"
    assert "analysis undecided after 1 s" in status["message"]
    wait_for_routing(client, "undecided", "v1", {"v1": 100})


def test_watch_names_an_ab_test_without_a_winner_and_exits_3(
    tmp_path: Path, env: dict[str, str], client: Client
) -> None:
    # Without traffic the A/B test cannot decide; at its maximum duration it ends
    # inconclusive: the stable version stays, and nothing calls that a rollback.
    spec = {
        "model": "abtested",
        "candidate": "v2",
        "strategy": "abtest",
        "abtest": {"metric": "error_rate", "mde": 0.05, "max_duration_s": 1},
    }
    file = write_spec(tmp_path / "abtest.yaml", spec)
    assert rollwise("apply", "-f", str(file), env=env).returncode == 0
    watched = rollwise("watch", "abtested", "--interval", "0.2", env=env, timeout_s=60)
    assert watched.returncode == 3, (watched.stdout, watched.stderr)
    assert "abtest v1 → v2  inconclusive" in watched.stdout
    assert "rolled back" not in watched.stdout
    status = client.rollout("abtested")["status"]
    assert (status["phase"], status["outcome"]) == ("inconclusive", "inconclusive")
    assert status["message"].endswith("v1 stays stable and v2 gets no traffic")
    wait_for_routing(client, "abtested", "v1", {"v1": 100})
    listed = rollwise("rollouts", "abtested", env=env)
    assert "inconclusive" in listed.stdout and "rolled back" not in listed.stdout


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            {"canary": {"weights": [10, 50], "pause": 5}},
            "rollout.canary: unknown key 'pause' (known: weights, pause_s)",
            id="unknown key",
        ),
        pytest.param(
            {"canary": {"weights": [50, 10]}},
            "rollout.canary.weights: must increase, but 10 follows 50",
            id="bad value",
        ),
        pytest.param(
            {"strategy": "rainbow"},
            "rollout: strategy 'rainbow' is not one of canary, linear",
            id="unknown strategy",
        ),
    ],
)
def test_a_bad_spec_file_exits_2_with_one_line_naming_the_key(
    tmp_path: Path, env: dict[str, str], change: dict[str, Any], message: str
) -> None:
    file = write_spec(tmp_path / "bad.yaml", {**CANARY, "model": "cli", **change})
    result = rollwise("apply", "-f", str(file), env=env)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert str(file) in result.stderr
    assert message in result.stderr
    assert result.stdout == ""


def test_demo_runs_the_whole_story(tmp_path: Path) -> None:
    result = rollwise("demo", "--dir", str(tmp_path / "demo"), timeout_s=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout[result.stdout.rindex("what happened") :]
    rows = {
        cells[0]: cells[1]
        for line in summary.splitlines()
        if "│" in line and (cells := [c.strip() for c in line.split("│")[1:-1]])[0]
    }
    assert rows == {
        "shadow v2": "validated",
        "canary v1 → v2": "promoted",
        "linear v2 → v3": "rolled back",
    }, summary
    assert "gate failed" in summary
