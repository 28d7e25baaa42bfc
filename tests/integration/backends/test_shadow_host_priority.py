"""The shadow host with a real child on a busy CPU: the child runs at the lowest priority
the operating system allows it, and a call it answers reports the model's own time, not
the time the child waited for a CPU behind the processes that outrank it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollwise.backends import InferenceRequest, Tensor
from rollwise.backends.inprocess import InProcessBackend
from rollwise.backends.registry import create_backend
from rollwise.backends.shadow_child import RunQueue
from rollwise.backends.shadow_host import ShadowHost, hosted_model
from rollwise.domain import VersionSpec

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="scheduling classes and CPU pinning: Linux"
)

BURN_MS = 10.0
"""The CPU time the model spends per call: several timeslices, so that a process of
normal priority on the same CPU holds it up many times over."""

MODULE = textwrap.dedent(
    f"""
    import time


    class Burner:
        '''Spends {BURN_MS} ms of its thread's CPU time per call.'''

        def predict(self, rows):
            end = time.thread_time() + {BURN_MS / 1000.0!r}
            while time.thread_time() < end:
                pass
            return [0] * len(rows)
    """
)

REQUEST = InferenceRequest((Tensor("input-0", (1, 1), "FP64", [0.0]),))


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "burners.py").write_text(MODULE)
    yield tmp_path


async def burner(folder: Path) -> InProcessBackend:
    options = {"target": "burners:Burner", "factory": True, "python_path": ".", "timeout_s": 120}
    built = create_backend(VersionSpec("v1", "python", options), folder)
    await built.load()
    assert isinstance(built, InProcessBackend)
    return built


def threads_of(pid: int) -> list[int]:
    return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]


def idle_class_allowed() -> bool:
    """Whether this system lets an unprivileged process into the idle class (tried in a
    throwaway process: a thread cannot leave it again)."""
    probe = "import os; os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))"
    return subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0


def test_every_thread_of_the_child_runs_at_the_lowest_priority(folder: Path) -> None:
    async def scenario() -> tuple[set[int], set[int]]:
        """The scheduling policies and nice values of the child's threads."""
        host = ShadowHost()
        model = hosted_model(await burner(folder))
        try:
            await host.predict(model, REQUEST)  # the model threads exist now
            assert host.pid is not None
            threads = threads_of(host.pid)
            assert len(threads) > 1
            return (
                {os.sched_getscheduler(tid) for tid in threads},
                {os.getpriority(os.PRIO_PROCESS, tid) for tid in threads},
            )
        finally:
            await host.close()

    policies, nice_values = asyncio.run(scenario())
    if idle_class_allowed():
        assert policies == {os.SCHED_IDLE}
    else:
        assert nice_values == {19}


def test_a_call_held_up_by_a_busy_cpu_reports_the_models_own_time(folder: Path) -> None:
    """A process that never sleeps shares the child's CPU: the call takes many times
    its model's CPU time on the clock, and reports about that CPU time."""
    if RunQueue.open() is None:
        pytest.skip("this kernel keeps no per-thread schedstat: calls report wall time")
    cpu = max(os.sched_getaffinity(0))

    async def scenario() -> tuple[float, float]:
        host = ShadowHost()
        model = hosted_model(await burner(folder))
        hog: asyncio.subprocess.Process | None = None
        try:
            # Started and loaded while the CPU is free: only the call is measured.
            await host.predict(model, REQUEST)
            assert host.pid is not None
            for thread in threads_of(host.pid):
                os.sched_setaffinity(thread, {cpu})
            hog = await asyncio.create_subprocess_exec(sys.executable, "-c", "while True: pass")
            os.sched_setaffinity(hog.pid, {cpu})
            loop = asyncio.get_running_loop()
            started = loop.time()
            async with asyncio.timeout(120):
                answer = await host.predict_timed(model, REQUEST)
            return answer.model_ms, (loop.time() - started) * 1000.0
        finally:
            if hog is not None:
                hog.kill()
                await hog.wait()
            await host.close()

    model_ms, took_ms = asyncio.run(scenario())
    assert took_ms > 5 * BURN_MS, (model_ms, took_ms)
    assert 0.9 * BURN_MS <= model_ms < 3 * BURN_MS, (model_ms, took_ms)
