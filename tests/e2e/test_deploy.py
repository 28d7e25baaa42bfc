"""``rollwise deploy`` end to end, as CI runs it: a real gateway with the controller
inside, synthetic users with delayed labels, and the command as a subprocess with
``--json``. One test per exit code: 0 a good candidate promoted, 3 a faulty one rolled
back, 4 one whose artifact fails to load, one that never gets ready in time, and a
rollout still running when the wait ends, 2 bad input (nothing changes).

Each test deploys to its own model, so they never see each other's rollouts.
"""

from __future__ import annotations

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
from support.gateway import OPERATOR, GatewayProcess, eventually
from support.rollouts import Traffic, all_ready, example_versions, kinds, rollout_config

MODELS = ("good", "faulty", "corrupt", "slow", "held", "refused")
ARTIFACT = "iris-v4.onnx"
CORRUPT = "corrupt.onnx"

ERRORS = {"metric": "error_rate", "max_increase": 0.03, "min_samples": 50}
ACCURACY = {"metric": "accuracy", "max_decrease": 0.05, "min_samples": 50}
ROLLBACK = {"on_inconclusive_after_s": 45}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    versions = example_versions(tmp_path_factory)
    directory = tmp_path_factory.mktemp("gateway")
    # Registered artifacts live in the config's folder (registration.artifact_dirs'
    # default): a good model, and a file that is no ONNX model at all.
    shutil.copy(versions["v2"]["path"], directory / ARTIFACT)
    (directory / CORRUPT).write_bytes(b"this is not an onnx model")
    config = rollout_config(versions, {m: ("v1", "v2") for m in MODELS})
    process = GatewayProcess(directory, config).start()
    try:
        with Client(process.url, OPERATOR) as client:
            eventually(lambda: all_ready(client), timeout_s=60)
        yield process
    finally:
        process.stop()


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def canary(model: str, candidate: str = "v4", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "candidate": candidate,
        "strategy": "canary",
        "canary": {"weights": [20, 50], "pause_s": 1},
        "gates": [ERRORS, ACCURACY],
        "rollback": ROLLBACK,
        **extra,
    }


def deploy(
    env: dict[str, str], *args: str, timeout_s: float = 240
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run ``rollwise deploy --json``; its stdout must be exactly one JSON document."""
    result = rollwise("deploy", *args, "--json", "--interval", "0.2", env=env, timeout_s=timeout_s)
    try:
        document = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"not one JSON document:\n{result.stdout}\n{result.stderr}") from None
    assert document["exit_code"] == result.returncode, document
    return result, document


def test_a_good_candidate_is_registered_and_promoted_exit_0(
    tmp_path: Path, gateway: GatewayProcess, env: dict[str, str], client: Client
) -> None:
    version = write(tmp_path / "version.yaml", {"backend": "onnx", "path": ARTIFACT})
    rollout = write(tmp_path / "rollout.yaml", canary("good"))

    with Traffic(gateway.url, "good", seed=11):
        result, done = deploy(env, "-f", str(rollout), "--version", str(version))

    assert result.returncode == 0, (done["message"], result.stderr)
    assert result.stderr == ""
    assert (done["model"], done["candidate"], done["result"]) == ("good", "v4", "promoted")
    assert done["version"]["source"] == "api"
    assert done["version"]["fleet"]["everywhere"] is True
    status = done["rollout"]["status"]
    assert (status["phase"], status["outcome"]) == ("promoted", "promoted")
    names = kinds(done["events"])
    assert names[0] == "rollout.started" and names[-1] == "rollout.promoted"
    assert names.count("rollout.analysis_passed") == 2
    assert {e["data"]["rollout"] for e in done["events"]} == {done["rollout"]["id"]}
    # Every decision carries the figures it was made on.
    for event in done["events"]:
        if event["kind"] == "rollout.analysis_passed":
            verdicts = {g["gate"]: g["verdict"] for g in event["data"]["judgement"]["gates"]}
            assert verdicts == {"error_rate.max_increase": "pass", "accuracy.max_decrease": "pass"}
    assert client.rollout("good")["status"]["phase"] == "promoted"

    # Deploying it again registers nothing new; the rollout is refused (already stable).
    again, redone = deploy(env, "-f", str(rollout), "--version", str(version))
    assert again.returncode == 2, redone
    assert redone["result"] == "refused"
    assert redone["version"]["name"] == "v4"


def test_a_faulty_candidate_is_rolled_back_exit_3(
    tmp_path: Path, gateway: GatewayProcess, env: dict[str, str]
) -> None:
    # Every answer of this version fails: the error gate rolls it back.
    version = write(
        tmp_path / "version.yaml",
        {
            "model": "faulty",
            "version": "bad",
            "backend": "fake",
            # The stable's outputs, so only its errors tell it apart.
            "outputs": {"label": 1, "probabilities": [0.0, 1.0, 0.0]},
            "error_rate": 1.0,
        },
    )
    rollout = write(tmp_path / "rollout.yaml", canary("faulty", "bad"))

    with Traffic(gateway.url, "faulty", seed=12):
        result, done = deploy(env, "-f", str(rollout), "--version", str(version))

    assert result.returncode == 3, (done["message"], result.stderr)
    assert done["result"] == "rolled_back"
    status = done["rollout"]["status"]
    assert (status["phase"], status["outcome"]) == ("rolled_back", "rolled_back")
    assert kinds(done["events"])[-1] == "rollout.rolled_back"
    assert done["events"][-1]["message"].startswith("rolled back to v1: gate failed: ")


def test_a_candidate_whose_artifact_fails_to_load_exits_4_naming_the_replica(
    tmp_path: Path, env: dict[str, str], client: Client
) -> None:
    version = write(tmp_path / "version.yaml", {"backend": "onnx", "path": CORRUPT})
    rollout = write(tmp_path / "rollout.yaml", canary("corrupt", "broken"))

    result, done = deploy(
        env, "-f", str(rollout), "--version", str(version), "--ready-timeout", "5"
    )

    assert result.returncode == 4, (done, result.stderr)
    assert done["result"] == "not_ready"
    failed = done["version"]["fleet"]["failed"]
    assert failed, done["version"]
    (replica,) = failed
    assert f"replica {replica}" in result.stderr
    assert "corrupt broken failed to load" in done["message"]
    assert done["rollout"] is None and done["events"] == []
    # Nothing was rolled out.
    assert client.rollouts("corrupt") == []


def test_a_candidate_not_ready_in_time_exits_4(tmp_path: Path, env: dict[str, str]) -> None:
    version = write(
        tmp_path / "version.yaml", {"backend": "fake", "label": 1, "load_latency_ms": 120_000}
    )
    rollout = write(tmp_path / "rollout.yaml", canary("slow", "sluggish"))

    result, done = deploy(
        env, "-f", str(rollout), "--version", str(version), "--ready-timeout", "2"
    )

    assert result.returncode == 4, (done, result.stderr)
    assert done["result"] == "not_ready"
    assert "slow sluggish is not ready on every live replica after 2 s" in done["message"]
    assert done["version"]["fleet"]["everywhere"] is False
    assert done["rollout"] is None


def test_a_rollout_still_running_at_the_timeout_exits_4_and_goes_on_unless_aborted(
    tmp_path: Path, env: dict[str, str], client: Client
) -> None:
    # A config-managed candidate: nothing to register, deploy only waits and rolls out.
    # The rollout then waits for a person at its pause, longer than deploy waits.
    held = {
        "model": "held",
        "candidate": "v2",
        "strategy": "steps",
        "steps": [{"set_weight": 10}, {"pause": {}}],
    }
    rollout = write(tmp_path / "rollout.yaml", held)

    # Without --json: what happened, one line each, and the result last.
    plain = rollwise("deploy", "-f", str(rollout), "--timeout", "1", "--interval", "0.2", env=env)
    assert plain.returncode == 4, (plain.stdout, plain.stderr)
    lines = plain.stdout.splitlines()
    assert lines[0] == "held v2: ready on 1/1 replica"
    assert lines[1].startswith("rollout #") and lines[1].endswith(
        " of held started: steps v1 → v2 (2 steps)"
    )
    assert any(line.endswith(" rollout.step: step 1/2: set weight 10 %") for line in lines)
    assert (
        lines[-2]
        == "held: still running after 1 s; it goes on (follow it with: rollwise watch held)"
    )
    assert lines[-1] == "deploy of held v2: timeout (exit 4) — still running after 1 s"
    assert client.rollout("held")["status"]["phase"] in ("progressing", "paused")

    result, done = deploy(env, "-f", str(rollout), "--timeout", "1", "--replace")
    assert result.returncode == 4, (done, result.stderr)
    assert done["result"] == "timeout"
    assert done["version"]["source"] == "config"
    assert done["rollout"]["status"]["phase"] in ("progressing", "paused")
    assert client.rollout("held")["id"] == done["rollout"]["id"]

    aborted, undone = deploy(
        env, "-f", str(rollout), "--timeout", "1", "--replace", "--abort-on-timeout"
    )
    assert aborted.returncode == 4, (undone, aborted.stderr)
    assert undone["result"] == "timeout"
    status = undone["rollout"]["status"]
    assert (status["phase"], status["outcome"]) == ("rolled_back", "aborted")
    assert kinds(undone["events"])[-1] == "rollout.rolled_back"


@pytest.mark.parametrize(
    ("rollout", "version", "message"),
    [
        pytest.param(
            {**canary("refused"), "canary": {"weights": [50, 10]}},
            None,
            "rollout.canary.weights: must increase",
            id="a bad rollout spec",
        ),
        pytest.param(
            canary("refused", "v9"),
            {"path": ARTIFACT},
            "the version needs a backend",
            id="a version file without a backend",
        ),
        pytest.param(
            canary("refused", "v9"),
            {"model": "good", "backend": "onnx", "path": ARTIFACT},
            "model 'good' in the file, but 'refused' in the rollout spec",
            id="a version file for another model",
        ),
        pytest.param(
            canary("refused", "v9"),
            {"backend": "no-such-backend"},
            "no-such-backend",
            id="a backend the gateway does not know",
        ),
        pytest.param(canary("nope", "v9"), {"backend": "fake"}, "nope", id="an unknown model"),
        pytest.param(canary("refused", "v9"), None, "v9", id="a candidate that is not registered"),
    ],
)
def test_bad_input_exits_2_and_changes_nothing(
    tmp_path: Path,
    env: dict[str, str],
    client: Client,
    rollout: dict[str, Any],
    version: dict[str, Any] | None,
    message: str,
) -> None:
    args = ["-f", str(write(tmp_path / "rollout.yaml", rollout))]
    if version is not None:
        args += ["--version", str(write(tmp_path / "version.yaml", version))]

    result, done = deploy(env, *args)

    assert result.returncode == 2, (done, result.stderr)
    assert done["result"] == "refused"
    assert message in done["message"]
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert client.rollouts("refused") == []
    assert "v9" not in {v["name"] for v in client.versions("refused")}


def test_without_json_a_refusal_is_one_line_on_stderr_and_the_result_on_stdout(
    tmp_path: Path, env: dict[str, str]
) -> None:
    rollout = write(tmp_path / "rollout.yaml", {**canary("refused"), "strategy": "rainbow"})

    result = rollwise("deploy", "-f", str(rollout), env=env)

    assert result.returncode == 2
    assert "strategy 'rainbow' is not one of" in result.stderr
    assert result.stdout.strip() == "deploy of ? ?: refused (exit 2)"
