"""The supervisor's decisions: how many workers, when to restart one, how a rolling
restart moves on, and how an exit is described."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollwise.config import parse_config
from rollwise.errors import ConfigError
from rollwise.server.worker_policy import (
    MAX_WORKERS,
    Phase,
    Restart,
    RestartPolicy,
    RollAction,
    WorkersSetting,
    describe_exit,
    parse_workers,
    restart_after_death,
    roll_action,
    workers_for,
)

POLICY = RestartPolicy(first_delay_s=0.5, factor=2.0, max_delay_s=30.0, stable_after_s=30.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("4", 4, id="a number"),
        pytest.param(" 1 ", 1, id="one, with spaces"),
        pytest.param("auto", "auto", id="auto"),
        pytest.param("AUTO", "auto", id="auto in capitals"),
        pytest.param(str(MAX_WORKERS), MAX_WORKERS, id="the most there may be"),
    ],
)
def test_workers_option_accepts(text: str, expected: WorkersSetting) -> None:
    assert parse_workers(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("0", "choose from 1 to", id="no worker at all"),
        pytest.param("-2", "choose from 1 to", id="a negative number"),
        pytest.param(str(MAX_WORKERS + 1), "choose from 1 to", id="more than the most"),
        pytest.param("two", "neither a number of workers nor auto", id="a word"),
        pytest.param("1.5", "neither a number of workers nor auto", id="a fraction"),
    ],
)
def test_workers_option_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_workers(text)


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        pytest.param({}, 1, id="one worker by default: no supervisor"),
        pytest.param({"workers": 4}, 4, id="a number"),
        pytest.param({"workers": "auto"}, "auto", id="auto"),
    ],
)
def test_config_workers_accepts(server: dict[str, object], expected: WorkersSetting) -> None:
    config = parse_config({"server": server}, base_dir=Path("."), source="rollwise.yaml")
    assert config.server.workers == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(0, id="no worker at all"),
        pytest.param(MAX_WORKERS + 1, id="more than the most"),
        pytest.param("4", id="a number in quotes"),
        pytest.param(True, id="a boolean"),
        pytest.param(2.5, id="a fraction"),
        pytest.param("many", id="a word"),
    ],
)
def test_config_workers_refuses_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config({"server": {"workers": value}}, base_dir=Path("."), source="rollwise.yaml")
    assert str(refused.value) == (
        f"rollwise.yaml: server.workers = {value!r}: must be a number of worker processes "
        f"from 1 to {MAX_WORKERS}, or auto"
    )


@pytest.mark.parametrize(
    ("setting", "cpus", "expected"),
    [
        pytest.param(3, 8, 3, id="a number is taken as it is"),
        pytest.param("auto", 8, 8, id="auto is one per CPU"),
        pytest.param("auto", 1, 1, id="auto on one CPU is one worker"),
        pytest.param("auto", None, 1, id="auto when the CPUs are unknown is one worker"),
        pytest.param("auto", 4096, MAX_WORKERS, id="auto is capped on a huge machine"),
    ],
)
def test_workers_for(setting: WorkersSetting, cpus: int | None, expected: int) -> None:
    assert workers_for(setting, cpus) == expected


@pytest.mark.parametrize(
    ("failures_before", "served_s", "expected"),
    [
        pytest.param(0, 120.0, Restart(1, 0.5), id="first death after serving long: at once"),
        pytest.param(0, None, Restart(1, 0.5), id="first death before it was ready"),
        pytest.param(1, None, Restart(2, 1.0), id="second death in a row waits twice as long"),
        pytest.param(3, 2.0, Restart(4, 4.0), id="a short life counts as a crash loop"),
        pytest.param(20, None, Restart(21, 30.0), id="a long crash loop waits the most"),
        pytest.param(7, 30.0, Restart(1, 0.5), id="serving the stable time starts afresh"),
        pytest.param(7, 29.9, Restart(8, 30.0), id="just under the stable time does not"),
    ],
)
def test_restart_after_death(
    failures_before: int, served_s: float | None, expected: Restart
) -> None:
    assert restart_after_death(failures_before, served_s, POLICY) == expected


@pytest.mark.parametrize(
    ("keep_slot", "new", "old", "expected"),
    [
        pytest.param(True, None, Phase.READY, RollAction.START_NEW, id="the slot starts anew"),
        pytest.param(
            True,
            Phase.STARTING,
            Phase.READY,
            RollAction.WAIT,
            id="the old serves while the new starts",
        ),
        pytest.param(
            True, Phase.READY, Phase.READY, RollAction.STOP_OLD, id="the new is ready: stop the old"
        ),
        pytest.param(
            True, Phase.READY, Phase.STOPPING, RollAction.WAIT, id="the old finishes its requests"
        ),
        pytest.param(True, Phase.READY, Phase.GONE, RollAction.DONE, id="the old has gone"),
        pytest.param(
            True, Phase.GONE, Phase.READY, RollAction.ABORT, id="the new died before it was ready"
        ),
        pytest.param(
            True,
            Phase.GONE,
            Phase.STOPPING,
            RollAction.ABORT,
            id="the new died while the old drained: go no further",
        ),
        pytest.param(
            True, Phase.READY, None, RollAction.DONE, id="a slot added by the new config is filled"
        ),
        pytest.param(
            True,
            Phase.READY,
            Phase.STARTING,
            RollAction.STOP_OLD,
            id="an old worker still starting is replaced too",
        ),
        pytest.param(
            False, None, Phase.READY, RollAction.STOP_OLD, id="a slot the new config drops stops"
        ),
        pytest.param(False, None, Phase.STOPPING, RollAction.WAIT, id="a dropped slot drains"),
        pytest.param(False, None, Phase.GONE, RollAction.DONE, id="a dropped slot is done"),
        pytest.param(
            True, Phase.STARTING, Phase.GONE, RollAction.WAIT, id="the old died meanwhile: wait"
        ),
    ],
)
def test_roll_action(
    keep_slot: bool, new: Phase | None, old: Phase | None, expected: RollAction
) -> None:
    assert roll_action(keep_slot=keep_slot, new=new, old=old) is expected


@pytest.mark.parametrize(
    ("returncode", "expected"),
    [
        pytest.param(0, "exited with code 0", id="a clean exit"),
        pytest.param(1, "exited with code 1", id="an error exit"),
        pytest.param(-9, "was killed by SIGKILL", id="kill -9"),
        pytest.param(-11, "was killed by SIGSEGV", id="a crash in native code"),
        pytest.param(-200, "was killed by signal 200", id="a signal without a name"),
    ],
)
def test_describe_exit(returncode: int, expected: str) -> None:
    assert describe_exit(returncode) == expected
