"""The arithmetic of a hosted call's time: its wall time less what it spent waiting for
a CPU in the shadow host, counted only where the call was held up by it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from rollwise.backends.shadow_child import ModelRun, net_model_ns

MS = 1_000_000


def run(
    wall: float, waited: float = 0, woken: float = 0, loop_waited: float = 0, readings: float = 0
) -> ModelRun:
    """A run of model code, its times in ms."""
    return ModelRun(
        wall=round(wall * MS),
        waited=round(waited * MS),
        woken=round(woken * MS),
        loop_waited=round(loop_waited * MS),
        readings=round(readings * MS),
    )


@dataclass(frozen=True)
class Case:
    """A call as the child measured it, and the model's time it reports; in ms."""

    wall: float
    loop_waited: float
    runs: list[ModelRun]
    expected: float
    running: float = 0
    """How long any call's model code, this one's included, ran during the call."""


CASES: dict[str, Case] = {
    "a call that never waited is its wall time": Case(10, 0, [run(9)], 10),
    "a model awaited on the loop loses the loop's waits": Case(10, 4, [], 6),
    "a run loses its own waits whole": Case(12, 0, [run(11, waited=6)], 6),
    "the model thread's wait to start the run comes off": Case(30, 0, [run(10, woken=19)], 11),
    "the loop's waits before and after the run come off": Case(30, 19, [run(10)], 11),
    "the loop's waits while the run went on do not": Case(12, 5, [run(11, loop_waited=5)], 12),
    "a model thread's old wait told late takes no more than the time outside the runs": Case(
        12, 0, [run(10, woken=500)], 10
    ),
    "so does the loop's": Case(12, 50, [run(10)], 10),
    "the loop's wait read higher during the run than over the call takes nothing": Case(
        12, 1, [run(10, loop_waited=3)], 12
    ),
    "the readings themselves are not the model's time": Case(12, 0, [run(10, readings=1)], 11),
    "runs add up, and so do their waits outside": Case(
        30,
        6,
        [run(10, waited=2, woken=1, loop_waited=1), run(10, waited=3, woken=2, loop_waited=1)],
        # outside the runs: 10 ms, of which (6 - 2) + (1 + 2) = 7 waiting
        30 - 5 - 7,
    ),
    "the time other calls' model code ran, the call waiting its turn, comes off": Case(
        30, 0, [run(10)], 15, running=25
    ),
    "but no more than the time outside the runs": Case(12, 0, [run(10)], 10, running=40),
    "the call's own runs are no other call's": Case(12, 0, [run(10)], 12, running=10),
    "a model awaited on the loop ran beside the other calls' code": Case(10, 0, [], 10, running=8),
    "never below zero": Case(5, 0, [run(10, waited=20)], 0),
}


@pytest.mark.parametrize("name", CASES)
def test_the_models_own_time(name: str) -> None:
    case = CASES[name]
    net = net_model_ns(
        round(case.wall * MS), round(case.loop_waited * MS), case.runs, round(case.running * MS)
    )
    assert net == round(case.expected * MS), name
    assert 0 <= net <= case.wall * MS, name
