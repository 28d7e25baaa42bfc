"""Labels that arrive for predictions made before the current metrics window.

A label counts toward the data of the second its prediction was made, not of the second
it arrived: a rollout step is judged on the data since its weights took effect, and a
label that arrives after a step change for a prediction made before it grades an answer
given under the previous weights. Labels for predictions in the current window simply
go into that window (the common, cheap case); the others are summed here by (model,
version, role, second of the prediction) and flushed with the window as buckets that
carry that second (``MetricBucketRow.predicted_s``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from rollwise.domain import Role
from rollwise.metrics.recorder import MetricKey, VersionWindow
from rollwise.metrics.scoring import Score

log = logging.getLogger("rollwise.gateway")

MAX_LATE_KEYS = 20_000
"""Late (model, version, role, second) sums held at most, about 300 bytes each. A flush
takes them all, so only a store outage, or labels for that many distinct seconds within
one flush interval, reaches the bound; beyond it a label for a new second counts in the
current window, as if its prediction had been made now, and nothing is lost."""

LateKey = tuple[str, str, Role, int]
"""(model, version, role, second the labelled predictions were made)."""


@dataclass(slots=True)
class FeedbackSums:
    """The feedback figures of some labels: what a ``VersionWindow`` holds of them,
    without its histograms, which cost kilobytes per key."""

    count: int = 0
    correct: int = 0
    abs_error: float = 0.0
    sq_error: float = 0.0
    quartic_error: float = 0.0
    satisfaction: int = 0
    satisfaction_sum: float = 0.0
    satisfaction_sq_sum: float = 0.0

    @classmethod
    def of(cls, score: Score) -> FeedbackSums:
        return cls(score.count, score.correct, score.abs_error, score.sq_error, score.quartic_error)

    def add(self, other: FeedbackSums) -> None:
        self.count += other.count
        self.correct += other.correct
        self.abs_error += other.abs_error
        self.sq_error += other.sq_error
        self.quartic_error += other.quartic_error
        self.satisfaction += other.satisfaction
        self.satisfaction_sum += other.satisfaction_sum
        self.satisfaction_sq_sum += other.satisfaction_sq_sum

    def add_to(self, window: VersionWindow) -> None:
        window.feedback += self.count
        window.correct += self.correct
        window.abs_error_sum += self.abs_error
        window.sq_error_sum += self.sq_error
        window.quartic_error_sum += self.quartic_error
        window.satisfaction += self.satisfaction
        window.satisfaction_sum += self.satisfaction_sum
        window.satisfaction_sq_sum += self.satisfaction_sq_sum

    def window(self) -> VersionWindow:
        window = VersionWindow()
        self.add_to(window)
        return window


class LateLabels:
    """Late labels' figures by their predictions' second, until a flush writes them,
    and their running totals since start (for ``/metrics``)."""

    def __init__(self, max_keys: int = MAX_LATE_KEYS) -> None:
        self.max_keys = max_keys
        self._sums: dict[LateKey, FeedbackSums] = {}
        self._totals: dict[MetricKey, FeedbackSums] = {}
        self._unattributed = 0
        """Labels counted as if made now since the store last took a flush; > 0 means
        the bound was reached and said so once."""

    def add(self, key: LateKey, sums: FeedbackSums) -> bool:
        """Count ``sums`` toward the second in ``key``; False, counting nothing, when the
        bound is reached and that second has no sums yet (the caller counts it now)."""
        held = self._sums.get(key)
        if held is None:
            if len(self._sums) >= self.max_keys:
                self._full()
                return False
            held = self._sums[key] = FeedbackSums()
        held.add(sums)
        total = self._totals.get(key[:3])
        if total is None:
            total = self._totals[key[:3]] = FeedbackSums()
        total.add(sums)
        return True

    def take(self) -> dict[LateKey, FeedbackSums]:
        """The sums due for the store; the caller writes them and then calls ``written``
        or, when the store refused them, ``give_back``."""
        taken, self._sums = self._sums, {}
        return taken

    def give_back(self, taken: Mapping[LateKey, FeedbackSums]) -> None:
        """Sums from ``take`` that the store did not take: the next flush writes them
        (already in the totals, they are not counted there again). With the sums added
        during the write, the map holds at most twice the bound until then."""
        for key, sums in taken.items():
            held = self._sums.get(key)
            if held is None:
                self._sums[key] = sums
            else:
                held.add(sums)

    def written(self) -> None:
        if self._unattributed:
            log.warning(
                "late labels count toward their predictions' time again; %d counted "
                "toward their arrival meanwhile",
                self._unattributed,
            )
            self._unattributed = 0

    def pending(self, model: str, since_s: float) -> dict[tuple[str, Role], VersionWindow]:
        """``model``'s late labels not yet in the store for predictions made since
        ``since_s``, merged by (version, role)."""
        merged: dict[tuple[str, Role], FeedbackSums] = {}
        for (name, version, role, second), sums in self._sums.items():
            if name == model and second >= since_s:
                merged.setdefault((version, role), FeedbackSums()).add(sums)
        return {key: sums.window() for key, sums in merged.items()}

    def totals(self) -> dict[MetricKey, VersionWindow]:
        """Late labels' figures since start, by (model, version, role)."""
        return {key: sums.window() for key, sums in self._totals.items()}

    def _full(self) -> None:
        if not self._unattributed:
            # Once per episode, not per label: an outage can last an hour.
            log.warning(
                "%d seconds of late labels wait for the store; until it takes them, "
                "labels for other seconds count as if their predictions were made now",
                self.max_keys,
            )
        self._unattributed += 1
