"""What the supervisor of ``serve --workers N`` decides, as pure functions.

How many workers ``auto`` means, how long to wait before restarting a worker that died,
what the next move of a rolling restart is, and how to say why a worker ended. The
supervisor (``server/supervisor.py``) does the I/O and asks these; they read no clock
and start no process, so tests drive them row by row.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass
from typing import Literal

MAX_WORKERS = 256
"""More worker processes than this is a typo, not a machine."""

WorkersSetting = int | Literal["auto"]


def parse_workers(text: str) -> WorkersSetting:
    """``--workers`` as the command line gives it: a whole number or ``auto``."""
    value = text.strip().lower()
    if value == "auto":
        return "auto"
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"{text!r} is neither a number of workers nor auto") from None
    if not 1 <= count <= MAX_WORKERS:
        raise ValueError(f"{count} workers: choose from 1 to {MAX_WORKERS}, or auto")
    return count


def workers_for(setting: WorkersSetting, cpus: int | None) -> int:
    """The number of workers to run: ``auto`` is one per CPU this process may use."""
    if setting == "auto":
        return max(1, min(cpus or 1, MAX_WORKERS))
    return setting


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Restarts of a worker that died, spaced out while it keeps dying.

    The first restart waits ``first_delay_s``, each one after it ``factor`` times longer,
    up to ``max_delay_s``. A worker that served for ``stable_after_s`` before it died
    is not part of a crash loop: its slot's count starts again.
    """

    first_delay_s: float = 0.5
    factor: float = 2.0
    max_delay_s: float = 30.0
    stable_after_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Restart:
    """When to start a dead worker's successor, and how many deaths in a row led here."""

    failures: int
    delay_s: float


def restart_after_death(
    failures_before: int, served_s: float | None, policy: RestartPolicy
) -> Restart:
    """The restart of a worker that ended without being asked to.

    ``failures_before``: deaths in a row of this slot's earlier workers; ``served_s``:
    how long this one served (None: it died before it was ready).
    """
    served_long = served_s is not None and served_s >= policy.stable_after_s
    failures = 1 if served_long else failures_before + 1
    delay_s = policy.first_delay_s * policy.factor ** (failures - 1)
    return Restart(failures, min(policy.max_delay_s, delay_s))


class Phase(enum.Enum):
    """Where one worker process is in its life, as the supervisor sees it."""

    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    GONE = "gone"


class RollAction(enum.Enum):
    """The next move of a rolling restart on one slot."""

    START_NEW = "start the new worker"
    WAIT = "wait"
    STOP_OLD = "stop the old worker"
    DONE = "the slot is done"
    ABORT = "abort: the new worker died"


def roll_action(*, keep_slot: bool, new: Phase | None, old: Phase | None) -> RollAction:
    """What a rolling restart does next on one slot.

    ``keep_slot``: the slot has a worker after the restart (false when the config
    asks for fewer workers than there are); ``new`` and ``old``: the phases of the
    slot's new and old worker, None when there is none. The old worker is stopped
    only once the new one is ready, so the slot never stops serving. A new worker that
    dies aborts the restart: the slots not yet replaced keep their old workers (a new
    config that kills workers goes no further), and the dead one is restarted as any.
    """
    if keep_slot:
        if new is None:
            return RollAction.START_NEW
        if new is Phase.STARTING:
            return RollAction.WAIT
        if new is not Phase.READY:
            return RollAction.ABORT
    if old in (Phase.STARTING, Phase.READY):
        return RollAction.STOP_OLD
    if old is Phase.STOPPING:
        return RollAction.WAIT
    return RollAction.DONE


def describe_exit(returncode: int) -> str:
    """Why a process ended, from its return code (negative: the signal that ended it)."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"was killed by {name}"
