"""Evidence: which measured windows stand for which arm, and what each step is judged on."""

from __future__ import annotations

import pytest
from rollout_helpers import BAKE_GATES, GATES, FakeController, make_spec, raw_spec

from rollwise.analysis.experiment import Outcome, decide_experiment
from rollwise.analysis.gates import Metric
from rollwise.analysis.judge import judge_step
from rollwise.analysis.summary import ArmSummary
from rollwise.analysis.verdict import Verdict
from rollwise.domain import Role
from rollwise.errors import ConfigError
from rollwise.metrics.histogram import LogHistogram
from rollwise.metrics.recorder import VersionWindow
from rollwise.rollout import (
    Analyze,
    CommandKind,
    Evidence,
    Experiment,
    Phase,
    RolloutSpec,
    arm_summary,
    decide,
    gather,
    parse_rollout_spec,
    start,
)

ERROR_AND_ACCURACY = [*GATES, {"metric": "accuracy", "max_decrease": 0.05}]


def window(
    requests: int,
    errors: int,
    feedback: int = 0,
    correct: int = 0,
    *,
    compared: int = 0,
    agreed: int = 0,
) -> VersionWindow:
    return VersionWindow(
        requests=requests,
        errors=errors,
        feedback=feedback,
        correct=correct,
        compared=compared,
        agreed=agreed,
    )


STABLE_SERVED = window(9000, 90, 900, 810)
CANDIDATE_SERVED = window(1000, 10, 100, 90)
CANDIDATE_SHADOW = window(4000, 40, 400, 360, compared=4000, agreed=3900)
CANDIDATE_PREVIEW = window(300, 30, 30, 20)
WINDOWS = {
    ("v1", Role.SERVED): STABLE_SERVED,
    ("v1", Role.SHADOW): window(7, 7),
    ("v2", Role.SERVED): CANDIDATE_SERVED,
    ("v2", Role.SHADOW): CANDIDATE_SHADOW,
    ("v2", Role.PREVIEW): CANDIDATE_PREVIEW,
    ("v3", Role.SERVED): window(5, 5),
}


def _at(spec: RolloutSpec, index: int) -> FakeController:
    run = FakeController(spec)
    run.drive_to(index)
    return run


@pytest.mark.parametrize(
    ("spec", "index", "candidate", "split"),
    [
        pytest.param(
            make_spec("canary", {"weights": [10]}, gates=ERROR_AND_ACCURACY),
            1,
            CANDIDATE_SERVED,
            (90, 10),
            id="a canary at 10 % is judged on served traffic with the SRM check",
        ),
        pytest.param(
            make_spec("shadow", {"mirror": 100}, gates=ERROR_AND_ACCURACY),
            1,
            CANDIDATE_SHADOW,
            None,
            id="a shadow is judged on mirrored traffic without an SRM check",
        ),
        pytest.param(
            make_spec(
                "shadow",
                {"then": {"strategy": "canary", "canary": {"weights": [20]}}},
                gates=ERROR_AND_ACCURACY,
            ),
            4,
            CANDIDATE_SERVED,
            (80, 20),
            id="a shadow gone on into a canary is judged on served traffic",
        ),
        pytest.param(
            make_spec("bluegreen", {}, gates=ERROR_AND_ACCURACY),
            1,
            CANDIDATE_PREVIEW,
            None,
            id="a blue-green preview without mirroring is judged on preview requests",
        ),
        pytest.param(
            make_spec("bluegreen", {"mirror": 20}, gates=ERROR_AND_ACCURACY),
            1,
            CANDIDATE_SHADOW,
            None,
            id="a blue-green preview with mirroring is judged on mirrored traffic",
        ),
        pytest.param(
            make_spec("bluegreen", {"bake_s": 60}, gates=[*ERROR_AND_ACCURACY, *BAKE_GATES[1:]]),
            3,
            CANDIDATE_SERVED,
            None,
            id="a blue-green bake at 100 % is judged on served traffic without SRM",
        ),
        pytest.param(
            make_spec(
                "steps",
                [{"set_weight": 30}, {"mirror": 50}, {"pause": 60}],
                gates=ERROR_AND_ACCURACY,
            ),
            2,
            CANDIDATE_SERVED,
            (70, 30),
            id="a candidate with weight is judged on served traffic even while mirrored",
        ),
    ],
)
def test_candidate_arm_is_served_while_weighted_and_shadow_while_only_mirrored(
    spec: RolloutSpec,
    index: int,
    candidate: VersionWindow,
    split: tuple[int, int] | None,
) -> None:
    run = _at(spec, index)
    evidence = gather(spec, run.status, WINDOWS)
    assert evidence.background is not None
    expected = judge_step(
        spec.gates, arm_summary(STABLE_SERVED), arm_summary(candidate), weights_percent=split
    )
    assert evidence.background == expected
    errors, accuracy = evidence.background.gates[:2]
    assert (errors.n_stable, errors.n_candidate) == (STABLE_SERVED.requests, candidate.requests)
    assert (accuracy.n_stable, accuracy.n_candidate) == (
        STABLE_SERVED.feedback,
        candidate.feedback,
    )
    if split is None:
        assert evidence.background.srm is None
    else:
        assert evidence.background.srm is not None
        assert list(evidence.background.srm.observed) == [
            STABLE_SERVED.requests,
            candidate.requests,
        ]


def test_analysis_with_the_background_gates_is_judged_once() -> None:
    spec = make_spec("canary", {"weights": [10], "pause_s": 0}, gates=GATES)
    run = FakeController(spec)
    assert isinstance(run.step, Analyze)
    evidence = gather(spec, run.status, WINDOWS)
    assert evidence.step is not None
    assert evidence.step == evidence.background


def test_analysis_with_gates_of_its_own_is_judged_on_them() -> None:
    own = [{"metric": "accuracy", "max_decrease": 0.02}]
    spec = make_spec("steps", [{"set_weight": 10}, {"analyze": {"gates": own}}], gates=GATES)
    run = FakeController(spec)
    evidence = gather(spec, run.status, WINDOWS)
    assert evidence.background is not None
    assert evidence.step is not None
    assert [g.gate.metric for g in evidence.background.gates] == [Metric.ERROR_RATE]
    assert [g.gate.metric for g in evidence.step.gates] == [Metric.ACCURACY]


def test_pause_step_gets_only_the_background_judgement() -> None:
    spec = make_spec("canary", {"weights": [10]}, gates=GATES)
    evidence = gather(spec, FakeController(spec).status, WINDOWS)
    assert evidence.background is not None
    assert (evidence.step, evidence.experiment) == (None, None)


def test_rollout_without_gates_has_no_background_judgement() -> None:
    spec = make_spec("canary", {"weights": [10]})
    evidence = gather(spec, FakeController(spec).status, WINDOWS)
    assert evidence == Evidence()


def test_missing_windows_count_as_no_traffic() -> None:
    spec = make_spec("canary", {"weights": [10]}, gates=GATES)
    evidence = gather(spec, FakeController(spec).status, {})
    assert evidence.background is not None
    assert evidence.background.verdict is Verdict.INCONCLUSIVE
    assert evidence.background.gates[0].n_candidate == 0


@pytest.mark.parametrize(
    ("ready", "problem"),
    [pytest.param(True, "", id="ready"), pytest.param(False, "load failed", id="not ready")],
)
def test_candidate_readiness_is_passed_through(ready: bool, problem: str) -> None:
    spec = make_spec("canary", {"weights": [10]}, gates=GATES)
    evidence = gather(
        spec, FakeController(spec).status, WINDOWS, candidate_ready=ready, candidate_problem=problem
    )
    assert (evidence.candidate_ready, evidence.candidate_problem) == (ready, problem)


def test_candidate_without_traffic_is_not_judged() -> None:
    spec = make_spec("steps", [{"pause": 60}, {"set_weight": 10}], gates=GATES)
    run = FakeController(spec)
    assert (run.status.weight, run.status.mirror, run.status.preview) == (0, 0, False)
    evidence = gather(spec, run.status, WINDOWS, candidate_ready=False, candidate_problem="x")
    assert evidence == Evidence(candidate_ready=False, candidate_problem="x")


def test_ended_rollout_is_not_judged() -> None:
    spec = make_spec("canary", {"weights": [10]}, gates=GATES)
    run = FakeController(spec)
    run.command(CommandKind.ABORT)
    assert gather(spec, run.status, WINDOWS) == Evidence()


# -- the experiment step ---------------------------------------------------------------------


ABTEST = make_spec("abtest", {"metric": "accuracy", "mde": 0.05, "split": 50})


def _arms(
    stable: tuple[int, int], candidate: tuple[int, int]
) -> dict[tuple[str, Role], VersionWindow]:
    """Windows where every request got feedback: (requests, correct) per arm."""
    return {
        ("v1", Role.SERVED): window(stable[0], 0, stable[0], stable[1]),
        ("v2", Role.SERVED): window(candidate[0], 0, candidate[0], candidate[1]),
    }


@pytest.mark.parametrize(
    ("windows", "outcome", "phase"),
    [
        pytest.param(
            _arms((2000, 1400), (2000, 1800)),
            Outcome.CANDIDATE_BETTER,
            Phase.PROMOTED,
            id="a more accurate candidate is promoted",
        ),
        pytest.param(
            _arms((2000, 1800), (2000, 1400)),
            Outcome.STABLE_BETTER,
            Phase.ROLLED_BACK,
            id="a less accurate candidate is rolled back",
        ),
        pytest.param(
            _arms((5000, 4000), (5000, 4000)),
            Outcome.NO_DIFFERENCE,
            Phase.NO_DIFFERENCE,
            id="equal accuracy ends with no difference, not a rollback",
        ),
        pytest.param(
            _arms((2000, 1400), (600, 420)),
            Outcome.INVALID,
            Phase.ROLLED_BACK,
            id="a split far from 50/50 invalidates the test",
        ),
        pytest.param(
            _arms((50, 40), (50, 40)),
            Outcome.CONTINUE,
            Phase.PROGRESSING,
            id="too few samples keep the test running",
        ),
    ],
)
def test_experiment_step_is_judged_by_decide_experiment(
    windows: dict[tuple[str, Role], VersionWindow], outcome: Outcome, phase: Phase
) -> None:
    run = FakeController(ABTEST)
    step = run.step
    assert isinstance(step, Experiment)
    assert run.status.experiment is not None
    evidence = gather(ABTEST, run.status, windows)
    expected = decide_experiment(
        Metric.ACCURACY,
        arm_summary(windows[("v1", Role.SERVED)]),
        arm_summary(windows[("v2", Role.SERVED)]),
        mde=step.mde,
        samples_per_arm=int(run.status.experiment["samples_per_arm"]),
        alpha=step.alpha,
        weights_percent=(50, 50),
        min_samples=step.min_samples,
    )
    assert evidence.experiment == expected
    assert evidence.experiment.outcome is outcome
    assert (evidence.background, evidence.step) == (None, None)
    assert run.tick(evidence, after=60).status.phase is phase


# -- arm summaries ---------------------------------------------------------------------------


def test_arm_summary_of_no_window_is_empty() -> None:
    assert arm_summary(None) == ArmSummary()


def test_arm_summary_carries_every_figure_of_the_window() -> None:
    measured = window(
        100,
        3,
        40,
        30,
        compared=90,
        agreed=80,
    )
    measured.record_call(12.0, failed=False, timed_out=False)
    measured.record_outputs(["setosa", "setosa", "virginica"], categorical=True)
    measured.abs_error_sum = 1.5
    measured.sq_error_sum = 2.5
    measured.quartic_error_sum = 6.5
    summary = arm_summary(measured)
    assert (summary.requests, summary.errors) == (101, 3)
    assert (summary.feedback, summary.correct) == (40, 30)
    assert (summary.shadow_compared, summary.shadow_agreed) == (90, 80)
    assert summary.latency == measured.latency_ms
    assert summary.latency_sum_ms == 12.0
    assert (summary.abs_error_sum, summary.sq_error_sum, summary.quartic_error_sum) == (
        1.5,
        2.5,
        6.5,
    )
    assert summary.outputs == {"setosa": 2, "virginica": 1}


def test_arm_summary_of_numeric_outputs_is_their_histogram() -> None:
    measured = window(3, 0)
    measured.record_outputs([1.5, 2.5, 40.0], categorical=False)
    summary = arm_summary(measured)
    assert isinstance(summary.outputs, LogHistogram)
    assert summary.outputs.count == 3
    assert arm_summary(window(3, 0)).outputs is None


def test_gathered_evidence_drives_a_rollback_of_a_bad_canary() -> None:
    spec = make_spec("canary", {"weights": [10]}, gates=GATES)
    run = FakeController(spec)
    windows = {("v1", Role.SERVED): window(9000, 9), ("v2", Role.SERVED): window(1000, 200)}
    decision = decide(spec, run.status, gather(spec, run.status, windows), run.now + 10)
    assert decision.status.phase is Phase.ROLLED_BACK
    assert decision.status.judgement is not None
    assert decision.status.judgement["background"]["verdict"] == "fail"


# -- shadow agreement is measured only while mirrored ----------------------------------------


AGREEMENT = [{"metric": "shadow_agreement", "min": 0.9}]
SHADOW_THEN_CANARY = {
    "mirror": 100,
    "then": {"strategy": "canary", "canary": {"weights": [10], "pause_s": 60}},
}


def test_shadow_agreement_is_judged_while_mirrored_and_left_out_once_weighted() -> None:
    spec = make_spec("shadow", SHADOW_THEN_CANARY, gates=[*AGREEMENT, *GATES])
    run = FakeController(spec)
    mirrored = gather(spec, run.status, WINDOWS)
    assert mirrored.background is not None
    assert [g.gate.metric for g in mirrored.background.gates] == [
        Metric.SHADOW_AGREEMENT,
        Metric.ERROR_RATE,
    ]
    run.drive_to(5)
    assert isinstance(run.step, Analyze)
    assert run.status.weight == 10
    weighted = gather(spec, run.status, WINDOWS)
    assert weighted.background is not None
    assert weighted.step == weighted.background
    assert [g.gate.metric for g in weighted.background.gates] == [Metric.ERROR_RATE]


def test_shadow_validated_on_agreement_alone_can_go_on_to_a_promotion() -> None:
    """A spec is refused when it cannot succeed; one that is accepted can be promoted."""
    data = raw_spec("shadow", SHADOW_THEN_CANARY, gates=AGREEMENT)
    try:
        spec = parse_rollout_spec(data)
    except ConfigError as refused:
        assert "shadow_agreement" in str(refused)
        return
    good = {
        ("v1", Role.SERVED): window(90_000, 90, 9000, 8100),
        ("v2", Role.SERVED): window(10_000, 10, 1000, 900),
        ("v2", Role.SHADOW): window(90_000, 90, 9000, 8100, compared=90_000, agreed=89_900),
    }
    run = FakeController(spec)
    for _ in range(100):
        if not run.status.phase.active:
            break
        run.tick(gather(spec, run.status, good), after=60)
    assert run.status.phase is Phase.PROMOTED, run.status.message


@pytest.mark.parametrize(
    ("split_by_user", "observed"),
    [
        pytest.param(
            False,
            [STABLE_SERVED.requests, CANDIDATE_SERVED.requests],
            id="requests assigned one by one: the check counts requests",
        ),
        pytest.param(
            True,
            [900, 80],
            id="users pinned by a sticky key: the check counts distinct users",
        ),
    ],
)
def test_the_sample_ratio_check_counts_what_the_split_assigns(
    split_by_user: bool, observed: list[int]
) -> None:
    spec = make_spec("canary", {"weights": [10], "pause_s": 60}, gates=GATES)
    decision = start(spec, stable="v1", now=0.0, split_by_user=split_by_user)
    assert decision.status.weight == 10
    windows = {key: window.copy() for key, window in WINDOWS.items()}
    windows["v1", Role.SERVED].users = 900
    windows["v2", Role.SERVED].users = 80
    evidence = gather(spec, decision.status, windows)
    assert evidence.background is not None
    assert evidence.background.srm is not None
    assert list(evidence.background.srm.observed) == observed
