"""The serving process's garbage-collector settings, and a record of its pauses.

A gateway allocates a few short-lived objects per request and keeps almost nothing, but
CPython's collector also walks everything start-up made (imports, models, config) on
each full pass: with a large heap that is tens of milliseconds, felt as a stall by
every request in flight. ``settle_heap`` runs once start-up is done: it collects,
freezes what is left (``gc.freeze``: those objects are never walked again) and raises
the thresholds so that passes are rarer. ``GC_PAUSES`` times every pass, for
``/metrics`` and ``bench/gateway_hotpath.py``.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any

GC_THRESHOLDS = (5_000, 20, 20)
"""Allocations before a generation-0 pass, and passes of one generation before the next
is collected. Python's default (700, 10, 10) runs a young pass every few requests."""


@dataclass(slots=True)
class GcPauses:
    """Passes, time and longest pause per generation since this process began timing."""

    passes: list[int] = field(default_factory=lambda: [0, 0, 0])
    seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    longest_s: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    _started: float = 0.0

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = int(info["generation"])
        self.passes[generation] += 1
        self.seconds[generation] += took
        if took > self.longest_s[generation]:
            self.longest_s[generation] = took

    @property
    def longest_pause_s(self) -> float:
        return max(self.longest_s)

    @property
    def total_s(self) -> float:
        return sum(self.seconds)


GC_PAUSES = GcPauses()
"""This process's record (timed once ``time_pauses`` has run)."""


def time_pauses() -> None:
    """Time every collector pass into ``GC_PAUSES`` (idempotent)."""
    if GC_PAUSES.callback not in gc.callbacks:
        gc.callbacks.append(GC_PAUSES.callback)


def settle_heap() -> None:
    """After start-up: collect, freeze the survivors, and set the server's thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    time_pauses()
