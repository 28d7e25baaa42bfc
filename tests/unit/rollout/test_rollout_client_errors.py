"""A candidate that refuses what the stable version accepts is rolled back on evidence.

Refusals are counted per version as client errors, never as errors;
the evidence carries them into the summaries that a ``client_error_rate`` gate judges.
"""

from __future__ import annotations

from rollout_helpers import FakeController, make_spec

from rollwise.domain import Role
from rollwise.metrics.recorder import VersionWindow
from rollwise.rollout import Phase, arm_summary, decide, gather

REFUSALS = [{"metric": "client_error_rate", "max_increase": 0.01}]


def window(answered: int, refused: int) -> VersionWindow:
    measured = VersionWindow()
    for _ in range(answered):
        measured.record_call(4.0, failed=False, timed_out=False)
    for _ in range(refused):
        measured.record_refusal()
    return measured


def test_the_arm_summary_carries_the_windows_client_errors() -> None:
    summary = arm_summary(window(answered=7, refused=3))
    assert (summary.requests, summary.errors, summary.client_errors) == (10, 0, 3)


def test_a_canary_refusing_what_the_stable_accepts_is_rolled_back() -> None:
    spec = make_spec("canary", {"weights": [10]}, gates=REFUSALS)
    run = FakeController(spec)
    windows = {
        ("v1", Role.SERVED): window(answered=8_910, refused=90),
        ("v2", Role.SERVED): window(answered=800, refused=200),
    }
    evidence = gather(spec, run.status, windows)
    assert evidence.background is not None
    assert evidence.background.verdict.value == "fail"
    decision = decide(spec, run.status, evidence, run.now + 10)
    assert decision.status.phase is Phase.ROLLED_BACK


def test_a_shadow_refusing_what_the_stable_accepts_fails_its_gate() -> None:
    spec = make_spec("shadow", {"mirror": 100}, gates=REFUSALS)
    run = FakeController(spec)
    windows = {
        ("v1", Role.SERVED): window(answered=4_950, refused=50),
        ("v2", Role.SHADOW): window(answered=4_000, refused=1_000),
    }
    evidence = gather(spec, run.status, windows)
    assert evidence.background is not None
    assert evidence.background.verdict.value == "fail"
