"""The state machine, tick by tick: every preset promoted, failed, timed out, commanded."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from rollout_helpers import (
    ALL_CANDIDATE,
    ALL_STABLE,
    BAKE_GATES,
    DECIDED,
    FAIL,
    FAILED,
    FAILING,
    GATE_FAILED,
    GATES,
    INCONCLUSIVE,
    PASS,
    PASSED,
    PASSING,
    PAUSED,
    PROMOTED,
    RESUMED,
    ROLLED_BACK,
    SKIPPED,
    STARTED,
    STEP,
    T0,
    UNDECIDED,
    VALIDATED,
    WINNING,
    FakeController,
    experiment,
    kinds,
    make_spec,
    split,
    waiting_indices,
)

from rollwise.analysis.experiment import ExperimentDecision, Outcome
from rollwise.analysis.judge import judge_step
from rollwise.analysis.summary import ArmSummary
from rollwise.errors import Conflict
from rollwise.rollout import (
    Analyze,
    Command,
    CommandKind,
    Evidence,
    Experiment,
    Pause,
    Phase,
    RolloutSpec,
    RoutingPlan,
    decide,
    describe_step,
    routing_for,
    start,
)

CANARY = make_spec("canary", {"weights": [10, 30, 50], "pause_s": 60}, gates=GATES)
"""Steps: 0 set 10, 1 pause, 2 analyze, 3 set 30, 4 pause, 5 analyze, 6 set 50, 7 pause,
8 analyze, 9 set 100."""


@dataclass(frozen=True)
class Tick:
    """One controller tick (or a person's command) and what it must lead to."""

    after_s: float = 0.0
    evidence: Evidence | None = None
    command: CommandKind | None = None
    phase: Phase = Phase.PROGRESSING
    step: int = 0
    weight: int = 0
    mirror: int = 0
    notes: tuple[str, ...] = ()
    routing: RoutingPlan | None = None
    """The new routing the decision carries; None when the routing stays as it was."""


@dataclass(frozen=True)
class Start:
    """What ``start`` must lead to."""

    step: int
    weight: int
    notes: tuple[str, ...]
    routing: RoutingPlan
    mirror: int = 0
    phase: Phase = Phase.PROGRESSING


PROMOTIONS = [
    pytest.param(
        CANARY,
        Start(1, 10, (STARTED, STEP, STEP), split(90, 10)),
        [
            Tick(30, PASSING, step=1, weight=10),
            Tick(30, PASSING, step=2, weight=10, notes=(STEP,)),
            Tick(5, UNDECIDED, step=2, weight=10),
            Tick(5, PASSING, step=4, weight=30, notes=(PASSED, STEP, STEP), routing=split(70, 30)),
            Tick(60, PASSING, step=5, weight=30, notes=(STEP,)),
            Tick(5, PASSING, step=7, weight=50, notes=(PASSED, STEP, STEP), routing=split(50, 50)),
            Tick(59, PASSING, step=7, weight=50),
            Tick(1, PASSING, step=8, weight=50, notes=(STEP,)),
            Tick(
                5,
                PASSING,
                phase=Phase.PROMOTED,
                step=10,
                weight=100,
                notes=(PASSED, STEP, PROMOTED),
                routing=ALL_CANDIDATE,
            ),
        ],
        id="canary 10-30-50 with gates: hold, analyze, raise, then 100",
    ),
    pytest.param(
        make_spec("canary", {"weights": [10, 50], "pause_s": None}),
        Start(1, 10, (STARTED, STEP, STEP), split(90, 10)),
        [
            Tick(86_400, None, step=1, weight=10),
            Tick(
                command=CommandKind.PROMOTE,
                step=3,
                weight=50,
                notes=(SKIPPED, STEP, STEP),
                routing=split(50, 50),
            ),
            Tick(86_400, None, step=3, weight=50),
            Tick(
                command=CommandKind.PROMOTE,
                phase=Phase.PROMOTED,
                step=5,
                weight=100,
                notes=(SKIPPED, STEP, PROMOTED),
                routing=ALL_CANDIDATE,
            ),
        ],
        id="canary with pause_s null: each weight waits for promote",
    ),
    pytest.param(
        make_spec("linear", {"increment": 30, "interval_s": 10}),
        Start(1, 30, (STARTED, STEP, STEP), split(70, 30)),
        [
            Tick(9, None, step=1, weight=30),
            Tick(1, None, step=3, weight=60, notes=(STEP, STEP), routing=split(40, 60)),
            Tick(10, None, step=5, weight=90, notes=(STEP, STEP), routing=split(10, 90)),
            Tick(
                10,
                None,
                phase=Phase.PROMOTED,
                step=7,
                weight=100,
                notes=(STEP, PROMOTED),
                routing=ALL_CANDIDATE,
            ),
        ],
        id="linear by 30 every 10 s: 30, 60, 90, 100",
    ),
    pytest.param(
        make_spec("bluegreen", {"mirror": 20, "bake_s": 60}, gates=BAKE_GATES),
        Start(1, 0, (STARTED, STEP, STEP), split(100, 0, mirror=20), mirror=20),
        [
            Tick(5, UNDECIDED, step=1, mirror=20),
            Tick(5, PASSING, step=3, weight=100, notes=(PASSED, STEP, STEP), routing=split(0, 100)),
            Tick(30, PASSING, step=3, weight=100),
            Tick(
                30,
                PASSING,
                phase=Phase.PROMOTED,
                step=4,
                weight=100,
                notes=(PROMOTED,),
                routing=ALL_CANDIDATE,
            ),
        ],
        id="blue-green: preview with mirroring, analyze, switch, bake",
    ),
    pytest.param(
        make_spec("bluegreen", {"auto_switch": False}),
        Start(1, 0, (STARTED, STEP, STEP), split(100, 0)),
        [
            Tick(3600, None, step=1),
            Tick(
                command=CommandKind.PROMOTE,
                phase=Phase.PROMOTED,
                step=3,
                weight=100,
                notes=(SKIPPED, STEP, PROMOTED),
                routing=ALL_CANDIDATE,
            ),
        ],
        id="blue-green without gates: preview until promoted, then switch",
    ),
    pytest.param(
        make_spec("shadow", {"then": "validated"}, gates=GATES),
        Start(1, 0, (STARTED, STEP, STEP), split(100, 0, mirror=100), mirror=100),
        [
            Tick(60, UNDECIDED, step=1, mirror=100),
            Tick(
                60,
                PASSING,
                phase=Phase.VALIDATED,
                step=3,
                notes=(PASSED, STEP, VALIDATED),
                routing=ALL_STABLE,
            ),
        ],
        id="shadow: mirror, analyze, stop mirroring, validated",
    ),
    pytest.param(
        make_spec(
            "shadow",
            {"then": {"strategy": "canary", "canary": {"weights": [20], "pause_s": 30}}},
            gates=GATES,
        ),
        Start(1, 0, (STARTED, STEP, STEP), split(100, 0, mirror=100), mirror=100),
        [
            Tick(
                60,
                PASSING,
                step=4,
                weight=20,
                notes=(PASSED, STEP, STEP, STEP),
                routing=split(80, 20),
            ),
            Tick(30, PASSING, step=5, weight=20, notes=(STEP,)),
            Tick(
                1,
                PASSING,
                phase=Phase.PROMOTED,
                step=7,
                weight=100,
                notes=(PASSED, STEP, PROMOTED),
                routing=ALL_CANDIDATE,
            ),
        ],
        id="shadow then canary: mirror, analyze, stop mirroring, 20 %, then 100",
    ),
    pytest.param(
        make_spec("abtest", {"metric": "accuracy", "mde": 0.05, "split": 20}),
        Start(0, 20, (STARTED, STEP), split(80, 20)),
        [
            Tick(
                600,
                Evidence(background=PASS, experiment=experiment(Outcome.CONTINUE)),
                step=0,
                weight=20,
            ),
            Tick(
                600,
                WINNING,
                phase=Phase.PROMOTED,
                step=1,
                weight=100,
                notes=(DECIDED, PROMOTED),
                routing=ALL_CANDIDATE,
            ),
        ],
        id="A/B test at 20 %: the candidate wins and is promoted",
    ),
    pytest.param(
        make_spec(
            "steps",
            [
                {"mirror": 50},
                {"analyze": {"max_duration_s": 300}},
                {"set_weight": 25},
                {"pause": 120},
                {"switch": {"keep_previous_s": 60}},
            ],
            gates=GATES,
        ),
        Start(1, 0, (STARTED, STEP, STEP), split(100, 0, mirror=50), mirror=50),
        [
            Tick(10, PASSING, step=3, weight=25, notes=(PASSED, STEP, STEP), routing=split(75, 25)),
            Tick(119, PASSING, step=3, weight=25),
            Tick(
                1,
                PASSING,
                phase=Phase.PROMOTED,
                step=5,
                weight=100,
                notes=(STEP, PROMOTED),
                routing=ALL_CANDIDATE,
            ),
        ],
        id="custom steps: mirror, analyze, 25 %, pause, switch",
    ),
]


@pytest.mark.parametrize(("spec", "first", "ticks"), PROMOTIONS)
def test_normal_promotion_tick_by_tick(spec: RolloutSpec, first: Start, ticks: list[Tick]) -> None:
    run = FakeController(spec)
    status = run.status
    assert (status.phase, status.step_index, status.weight, status.mirror) == (
        first.phase,
        first.step,
        first.weight,
        first.mirror,
    )
    assert kinds(run.first) == first.notes
    assert run.first.routing == first.routing
    assert status.started_s == T0
    for i, tick in enumerate(ticks):
        if tick.command is not None:
            decision = run.command(tick.command, after=tick.after_s)
        else:
            decision = run.tick(tick.evidence, after=tick.after_s)
        status = decision.status
        got = (status.phase, status.step_index, status.weight, status.mirror, kinds(decision))
        want = (tick.phase, tick.step, tick.weight, tick.mirror, tick.notes)
        assert got == want, f"tick {i}"
        assert decision.routing == tick.routing, f"tick {i}"
        assert run.routing == routing_for(status), f"tick {i}"
    assert not status.phase.active
    if status.phase is Phase.PROMOTED:
        assert status.outcome == "promoted"
        assert status.previous_stable == "v1"
        assert status.finished_s == run.now
        assert run.routing == ALL_CANDIDATE
    else:
        assert status.outcome == "validated"
        assert (status.weight, status.mirror, status.preview) == (0, 0, False)
        assert run.routing == ALL_STABLE


def test_promotion_keeps_the_old_version_for_the_switch_keep_time() -> None:
    run = FakeController(make_spec("bluegreen", {"keep_previous_s": 120}, gates=GATES))
    run.run_to_end()
    assert run.status.phase is Phase.PROMOTED
    assert run.status.keep_previous_until_s == run.now + 120


def test_start_notes_say_who_started_what_and_each_step_entered() -> None:
    decision = start(CANARY, stable="v1", now=T0, actor="carol")
    started, *entered = decision.notes
    assert started.kind == STARTED
    assert "carol" in started.message
    assert started.data["strategy"] == "canary"
    assert started.data["stable"] == "v1"
    assert started.data["candidate"] == "v2"
    assert started.data["spec"] == CANARY.to_dict()
    assert [n.data["description"] for n in entered] == [
        describe_step(CANARY.steps[0]),
        describe_step(CANARY.steps[1]),
    ]
    # Step numbers count from 1 in the data as in the messages ("step 1/7").
    assert [n.data["step"] for n in entered] == [1, 2]
    assert [n.message.split(":")[0] for n in entered] == [
        f"step 1/{len(CANARY.steps)}",
        f"step 2/{len(CANARY.steps)}",
    ]
    assert decision.status.actor == "carol"


def test_start_refuses_a_candidate_that_is_already_stable() -> None:
    with pytest.raises(Conflict, match="already the stable version"):
        start(CANARY, stable="v2", now=T0)


# -- failure at each step --------------------------------------------------------------------


FAILURE_PRESETS = {
    "canary": CANARY,
    "canary (promote)": make_spec("canary", {"weights": [10, 50], "pause_s": None}, gates=GATES),
    "linear": make_spec("linear", {"increment": 40, "interval_s": 10}, gates=GATES),
    "blue-green": make_spec("bluegreen", {"mirror": 20, "bake_s": 60}, gates=BAKE_GATES),
    "blue-green (promote)": make_spec(
        "bluegreen", {"auto_switch": False, "bake_s": 30}, gates=BAKE_GATES
    ),
    "shadow": make_spec("shadow", {}, gates=GATES),
    "shadow then canary": make_spec(
        "shadow", {"then": {"strategy": "canary", "canary": {"weights": [20]}}}, gates=GATES
    ),
    "A/B test": make_spec("abtest", {"metric": "accuracy", "mde": 0.05}, gates=GATES),
    "custom": make_spec(
        "steps",
        [{"preview": {}}, {"analyze": None}, {"set_weight": 30}, {"pause": 30}, {"switch": {}}],
        gates=GATES,
    ),
}

EACH_WAITING_STEP = [
    pytest.param(
        name, index, id=f"{name}: fails at step {index} ({describe_step(spec.steps[index])})"
    )
    for name, spec in FAILURE_PRESETS.items()
    for index in waiting_indices(spec)
]


@pytest.mark.parametrize(("name", "index"), EACH_WAITING_STEP)
def test_failing_background_gate_rolls_back_at_once(name: str, index: int) -> None:
    run = FakeController(FAILURE_PRESETS[name])
    run.drive_to(index)
    before = run.routing
    decision = run.tick(FAILING, after=1)
    status = decision.status
    assert status.phase is Phase.ROLLED_BACK
    assert status.outcome == "rolled_back"
    assert status.step_index == index
    assert (status.weight, status.mirror, status.preview) == (0, 0, False)
    assert status.failures == 1
    assert status.finished_s == run.now
    assert decision.routing == ALL_STABLE != before
    assert kinds(decision) == (ROLLED_BACK,)
    assert FAIL.reason in decision.notes[0].message
    assert FAIL.reason in status.message
    assert status.judgement == {"background": FAIL.to_dict()}


ANALYZE_STEPS = [
    pytest.param(name, index, id=f"{name}: its analysis fails at step {index}")
    for name, spec in FAILURE_PRESETS.items()
    for index in waiting_indices(spec)
    if isinstance(spec.steps[index], Analyze)
]


@pytest.mark.parametrize(("name", "index"), ANALYZE_STEPS)
def test_failing_analysis_rolls_back(name: str, index: int) -> None:
    run = FakeController(FAILURE_PRESETS[name])
    run.drive_to(index)
    decision = run.tick(Evidence(background=PASS, step=FAIL), after=1)
    assert decision.status.phase is Phase.ROLLED_BACK
    assert decision.routing == ALL_STABLE
    assert kinds(decision) == (ROLLED_BACK,)
    assert FAIL.reason in decision.notes[0].message


def test_failing_judgement_for_another_step_than_an_analysis_is_not_counted() -> None:
    run = FakeController(CANARY)
    decision = run.tick(Evidence(background=PASS, step=FAIL), after=1)
    assert decision.status.phase is Phase.PROGRESSING
    assert decision.status.failures == 0


def test_candidate_judged_by_real_arms_with_many_errors_is_rolled_back() -> None:
    stable = ArmSummary(requests=9000, errors=90)
    candidate = ArmSummary(requests=1000, errors=300)
    verdict = judge_step(CANARY.gates, stable, candidate, weights_percent=(90, 10))
    run = FakeController(CANARY)
    decision = run.tick(Evidence(background=verdict), after=10)
    assert decision.status.phase is Phase.ROLLED_BACK
    assert "error_rate" in decision.notes[0].message


# -- the failure limit -----------------------------------------------------------------------


LIMIT_3 = make_spec(
    "canary", {"weights": [10, 30], "pause_s": 600}, gates=GATES, rollback={"failure_limit": 3}
)


def test_failure_limit_3_rolls_back_on_the_third_failing_tick_in_a_row() -> None:
    run = FakeController(LIMIT_3)
    for failures in (1, 2):
        decision = run.tick(FAILING, after=1)
        assert decision.status.phase is Phase.PROGRESSING
        assert decision.status.failures == failures
        assert kinds(decision) == (GATE_FAILED,)
        assert f"{failures} of 3" in decision.notes[0].message
        assert decision.routing is None
    decision = run.tick(FAILING, after=1)
    assert decision.status.phase is Phase.ROLLED_BACK
    assert decision.status.failures == 3
    assert decision.routing == ALL_STABLE
    assert kinds(decision) == (ROLLED_BACK,)


@pytest.mark.parametrize(
    "calm",
    [
        pytest.param(PASSING, id="a passing tick"),
        pytest.param(UNDECIDED, id="an inconclusive tick"),
        pytest.param(None, id="a tick without evidence"),
    ],
)
def test_non_failing_tick_resets_the_failure_count(calm: Evidence | None) -> None:
    run = FakeController(LIMIT_3)
    run.tick(FAILING, after=1)
    run.tick(FAILING, after=1)
    assert run.status.failures == 2
    assert run.tick(calm, after=1).status.failures == 0
    for failures in (1, 2):
        assert run.tick(FAILING, after=1).status.failures == failures
    assert run.status.phase is Phase.PROGRESSING
    assert run.tick(FAILING, after=1).status.phase is Phase.ROLLED_BACK


# -- inconclusive analyses -------------------------------------------------------------------


def _at_first_analysis(policy: dict[str, object]) -> FakeController:
    spec = make_spec("canary", {"weights": [10, 30], "pause_s": 60}, gates=GATES, rollback=policy)
    run = FakeController(spec)
    run.drive_to(2)
    assert isinstance(run.step, Analyze)
    return run


@pytest.mark.parametrize(
    ("evidence", "why"),
    [
        pytest.param(UNDECIDED, INCONCLUSIVE.reason, id="inconclusive judgements"),
        pytest.param(None, "nothing to judge", id="no judgements at all"),
    ],
)
def test_undecided_analysis_times_out_into_a_rollback(evidence: Evidence | None, why: str) -> None:
    run = _at_first_analysis({"on_inconclusive_after_s": 300})
    for _ in range(29):
        decision = run.tick(evidence, after=10)
        assert decision.status.phase is Phase.PROGRESSING
        assert decision.status.step_index == 2
    decision = run.tick(evidence, after=10)
    status = decision.status
    assert status.phase is Phase.ROLLED_BACK
    assert status.outcome == "rolled_back"
    assert "undecided after 300 s" in status.message
    assert why in status.message
    assert kinds(decision) == (ROLLED_BACK,)
    assert decision.routing == ALL_STABLE


def test_an_undecided_analysis_keeps_how_much_longer_each_gate_needs() -> None:
    spec = make_spec(
        "canary", {"weights": [10], "pause_s": 0}, gates=[{**GATES[0], "min_samples": 300}]
    )
    run = FakeController(spec)
    assert isinstance(run.step, Analyze)
    # 100 samples in the candidate's arm in the 50 s since its weight took effect.
    stable, candidate = ArmSummary(900, errors=9), ArmSummary(100, errors=1)
    verdict = judge_step(spec.gates, stable, candidate, weights_percent=(90, 10))
    status = run.tick(Evidence(background=verdict, step=verdict), after=50).status
    assert status.judgement is not None
    [gate] = status.judgement["step"]["gates"]
    assert gate["horizon"]["more"] == 200
    assert gate["horizon"]["at_least"] is True
    assert gate["horizon"]["expected_s"] == pytest.approx(100.0)


def test_undecided_analysis_pauses_for_a_person_when_the_policy_says_pause() -> None:
    run = _at_first_analysis({"on_inconclusive": "pause", "on_inconclusive_after_s": 300})
    run.tick(UNDECIDED, after=299)
    decision = run.tick(UNDECIDED, after=1)
    assert decision.status.phase is Phase.PAUSED
    assert decision.status.actor == "controller"
    assert "undecided after 300 s" in decision.status.message
    assert kinds(decision) == (PAUSED,)
    assert decision.routing is None
    # Paused, it waits for a person even when the analysis would now pass.
    assert run.tick(PASSING, after=3600).status.step_index == 2
    assert run.status.phase is Phase.PAUSED
    # Resumed, the analysis gets its full time again.
    assert kinds(run.command(CommandKind.RESUME)) == (RESUMED,)
    assert run.tick(UNDECIDED, after=299).status.phase is Phase.PROGRESSING
    assert run.tick(PASSING, after=1).status.step_index == 4


def test_analysis_limit_of_its_own_overrides_the_policy() -> None:
    spec = make_spec(
        "bluegreen", {"analysis_max_s": 120}, gates=GATES, rollback={"on_inconclusive_after_s": 900}
    )
    run = FakeController(spec)
    assert run.tick(UNDECIDED, after=119).status.phase is Phase.PROGRESSING
    decision = run.tick(UNDECIDED, after=1)
    assert decision.status.phase is Phase.ROLLED_BACK
    assert "120 s" in decision.status.message


def test_inconclusive_background_gates_never_promote_past_an_analysis() -> None:
    run = FakeController(CANARY)
    for _ in range(20):
        run.tick(UNDECIDED, after=60)
        if not run.status.phase.active:
            break
    assert run.status.phase is Phase.ROLLED_BACK
    assert run.status.weight == 0
    assert max(d.status.weight for d in run.decisions) == 10


# -- a person's commands ---------------------------------------------------------------------


CANARY_STEPS = [
    pytest.param(index, id=f"at step {index} ({describe_step(CANARY.steps[index])})")
    for index in waiting_indices(CANARY)
]


def _canary_at(index: int, *, paused: bool = False) -> FakeController:
    run = FakeController(CANARY)
    run.drive_to(index)
    if paused:
        run.command(CommandKind.PAUSE)
    return run


@pytest.mark.parametrize("index", CANARY_STEPS)
def test_pause_holds_the_step_and_resume_restarts_its_clock(index: int) -> None:
    run = _canary_at(index)
    weight = run.status.weight
    decision = run.command(CommandKind.PAUSE, actor="dan", reason="looking at dashboards")
    assert decision.status.phase is Phase.PAUSED
    assert decision.status.actor == "dan"
    assert "looking at dashboards" in decision.status.message
    assert kinds(decision) == (PAUSED,)
    assert decision.routing is None
    for _ in range(3):
        held = run.tick(PASSING, after=3600)
        assert (held.status.phase, held.status.step_index) == (Phase.PAUSED, index)
        assert held.routing is None
    resumed = run.command(CommandKind.RESUME, actor="dan")
    assert resumed.status.phase is Phase.PROGRESSING
    assert resumed.status.step_started_s == run.now
    assert kinds(resumed) == (RESUMED,)
    assert (resumed.status.step_index, resumed.status.weight) == (index, weight)
    if isinstance(run.step, Pause):
        assert run.tick(PASSING, after=59).status.step_index == index
    run.run_to_end()
    assert run.status.phase is Phase.PROMOTED


@pytest.mark.parametrize(
    "paused", [pytest.param(False, id="progressing"), pytest.param(True, id="paused")]
)
@pytest.mark.parametrize("index", CANARY_STEPS)
def test_promote_lets_the_current_step_go(index: int, paused: bool) -> None:
    run = _canary_at(index, paused=paused)
    decision = run.command(CommandKind.PROMOTE, actor="erin")
    following = [i for i in waiting_indices(CANARY) if i > index]
    assert kinds(decision)[0] == SKIPPED
    assert decision.notes[0].data["actor"] == "erin"
    if following:
        assert decision.status.phase is Phase.PROGRESSING
        assert decision.status.step_index == following[0]
        assert decision.status.actor == "erin"
    else:
        assert decision.status.phase is Phase.PROMOTED
        assert kinds(decision)[-1] == PROMOTED
        assert decision.routing == ALL_CANDIDATE


@pytest.mark.parametrize(
    ("spec", "index", "phase", "note"),
    [
        pytest.param(CANARY, 8, Phase.PROMOTED, PROMOTED, id="the last analysis of a canary"),
        pytest.param(
            make_spec("shadow", {}, gates=GATES),
            1,
            Phase.VALIDATED,
            VALIDATED,
            id="the analysis of a shadow",
        ),
    ],
)
def test_promote_that_lets_the_last_step_go_is_recorded_as_the_persons(
    spec: RolloutSpec, index: int, phase: Phase, note: str
) -> None:
    run = FakeController(spec)
    run.drive_to(index)
    decision = run.command(CommandKind.PROMOTE, actor="erin")
    assert decision.status.phase is phase
    assert decision.status.actor == "erin", "the person who asked made this change of phase"
    ending = decision.notes[-1]
    assert ending.kind == note
    assert ending.data["actor"] == "erin"


@pytest.mark.parametrize(
    "paused", [pytest.param(False, id="progressing"), pytest.param(True, id="paused")]
)
@pytest.mark.parametrize("index", CANARY_STEPS)
def test_promote_full_makes_the_candidate_stable_now(index: int, paused: bool) -> None:
    run = _canary_at(index, paused=paused)
    decision = run.command(CommandKind.PROMOTE_FULL, actor="erin", reason="hotfix")
    status = decision.status
    assert status.phase is Phase.PROMOTED
    assert status.outcome == "promoted"
    assert status.actor == "erin"
    assert status.step_index == len(CANARY.steps)
    assert (status.weight, status.previous_stable) == (100, "v1")
    assert "hotfix" in status.message
    assert kinds(decision) == (PROMOTED,)
    assert decision.routing == ALL_CANDIDATE


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(CommandKind.ABORT, id="abort"),
        pytest.param(CommandKind.ROLLBACK, id="rollback"),
    ],
)
@pytest.mark.parametrize(
    "paused", [pytest.param(False, id="progressing"), pytest.param(True, id="paused")]
)
@pytest.mark.parametrize("index", CANARY_STEPS)
def test_abort_sends_all_traffic_back_to_stable(
    index: int, paused: bool, kind: CommandKind
) -> None:
    run = _canary_at(index, paused=paused)
    decision = run.command(kind, actor="frank", reason="wrong model file")
    status = decision.status
    assert status.phase is Phase.ROLLED_BACK
    assert status.outcome == ("aborted" if kind is CommandKind.ABORT else "rolled_back")
    assert status.actor == "frank"
    assert "frank" in status.message
    assert "wrong model file" in status.message
    assert (status.weight, status.mirror) == (0, 0)
    assert kinds(decision) == (ROLLED_BACK,)
    assert decision.routing == ALL_STABLE


def _ended(phase: Phase) -> FakeController:
    if phase is Phase.PROMOTED:
        run = FakeController(CANARY)
        run.run_to_end()
    elif phase is Phase.ROLLED_BACK:
        run = FakeController(CANARY)
        run.tick(FAILING, after=1)
    elif phase is Phase.VALIDATED:
        run = FakeController(make_spec("shadow", {}, gates=GATES))
        run.run_to_end()
    else:
        run = FakeController(CANARY)
        run.tick(Evidence(candidate_ready=False), after=1)
    assert run.status.phase is phase
    return run


@pytest.mark.parametrize(
    ("setup", "kind", "words"),
    [
        pytest.param("paused", CommandKind.PAUSE, "already paused", id="pause when paused"),
        pytest.param(
            "progressing",
            CommandKind.RESUME,
            "progressing, not paused",
            id="resume when progressing",
        ),
        *[
            pytest.param(phase, kind, "has ended", id=f"{kind.value} when {phase.value}")
            for phase in (Phase.PROMOTED, Phase.ROLLED_BACK, Phase.VALIDATED, Phase.FAILED)
            for kind in (
                CommandKind.ABORT,
                CommandKind.PAUSE,
                CommandKind.RESUME,
                CommandKind.PROMOTE,
                CommandKind.PROMOTE_FULL,
            )
        ],
        *[
            pytest.param(
                phase,
                CommandKind.ROLLBACK,
                "nothing to roll back",
                id=f"rollback when {phase.value}",
            )
            for phase in (Phase.ROLLED_BACK, Phase.VALIDATED, Phase.FAILED)
        ],
    ],
)
def test_command_that_does_not_fit_is_a_conflict(
    setup: str | Phase, kind: CommandKind, words: str
) -> None:
    if setup == "paused":
        run = _canary_at(1, paused=True)
    elif setup == "progressing":
        run = _canary_at(1)
    else:
        assert isinstance(setup, Phase)
        run = _ended(setup)
    before = run.status
    with pytest.raises(Conflict, match=words):
        run.command(kind, after=1)
    assert run.status == before


def test_rollback_after_promotion_returns_to_the_previous_stable() -> None:
    run = FakeController(CANARY)
    run.run_to_end()
    assert run.routing == ALL_CANDIDATE
    decision = run.command(CommandKind.ROLLBACK, after=120, actor="gina", reason="accuracy dropped")
    status = decision.status
    assert status.phase is Phase.ROLLED_BACK
    assert status.outcome == "rolled_back"
    assert status.actor == "gina"
    assert "v1" in status.message
    assert "accuracy dropped" in status.message
    assert status.finished_s == run.now
    assert decision.routing == ALL_STABLE
    assert kinds(decision) == (ROLLED_BACK,)
    assert decision.notes[0].data["after_promotion"] is True
    # Once rolled back, nothing more happens and there is nothing left to roll back.
    later = run.tick(PASSING, after=60)
    assert later.routing is None
    assert later.notes == ()
    with pytest.raises(Conflict):
        run.command(CommandKind.ROLLBACK)


def test_ended_rollout_ignores_evidence() -> None:
    run = FakeController(CANARY)
    run.run_to_end()
    before = run.status
    for evidence in (FAILING, PASSING, Evidence(candidate_ready=False), None):
        decision = run.tick(evidence, after=60)
        assert decision.status == before
        assert decision.routing is None
        assert decision.notes == ()


# -- the A/B experiment step -----------------------------------------------------------------


ABTEST = make_spec(
    "abtest", {"metric": "accuracy", "mde": 0.05, "split": 30, "max_duration_s": 3600}
)


def test_experiment_step_plans_its_sample_size_at_start() -> None:
    run = FakeController(ABTEST)
    assert run.status.weight == 30
    assert run.status.experiment is not None
    assert run.status.experiment["metric"] == "accuracy"
    assert run.status.experiment["samples_per_arm"] > 0
    assert isinstance(run.step, Experiment)


@pytest.mark.parametrize(
    ("outcome", "phase", "ending", "notes", "routing", "words"),
    [
        pytest.param(
            Outcome.CANDIDATE_BETTER,
            Phase.PROMOTED,
            "promoted",
            (DECIDED, PROMOTED),
            ALL_CANDIDATE,
            "won the A/B test",
            id="candidate better: promoted",
        ),
        pytest.param(
            Outcome.STABLE_BETTER,
            Phase.ROLLED_BACK,
            "rolled_back",
            (DECIDED, ROLLED_BACK),
            ALL_STABLE,
            "v1 won the A/B test",
            id="stable better: rolled back",
        ),
        pytest.param(
            Outcome.INVALID,
            Phase.ROLLED_BACK,
            "rolled_back",
            (ROLLED_BACK,),
            ALL_STABLE,
            "invalid",
            id="invalid (sample ratio mismatch): rolled back",
        ),
        pytest.param(
            Outcome.NO_DIFFERENCE,
            Phase.NO_DIFFERENCE,
            "no_difference",
            (DECIDED, "rollout.no_difference"),
            ALL_STABLE,
            "no difference: the figures say so; v1 stays stable and v2 gets no traffic",
            id="no difference: named so, stable kept, not a rollback",
        ),
        pytest.param(
            Outcome.INCONCLUSIVE,
            Phase.INCONCLUSIVE,
            "inconclusive",
            (DECIDED, "rollout.inconclusive"),
            ALL_STABLE,
            "inconclusive at the planned size: the figures say so; v1 stays stable and v2 gets"
            " no traffic",
            id="inconclusive at the planned size: named so, stable kept, not a rollback",
        ),
    ],
)
def test_experiment_decision_ends_the_rollout(
    outcome: Outcome,
    phase: Phase,
    ending: str,
    notes: tuple[str, ...],
    routing: RoutingPlan,
    words: str,
) -> None:
    run = FakeController(ABTEST)
    assert run.tick(Evidence(experiment=experiment(Outcome.CONTINUE)), after=60).routing is None
    result = experiment(outcome, "the figures say so")
    decision = run.tick(Evidence(background=PASS, experiment=result), after=60)
    status = decision.status
    assert (status.phase, status.outcome) == (phase, ending)
    assert kinds(decision) == notes
    assert decision.routing == routing
    assert words in status.message
    assert status.experiment is not None
    assert status.experiment["decision"] == result.to_dict()


@pytest.mark.parametrize(
    "evidence",
    [
        pytest.param(
            Evidence(experiment=experiment(Outcome.CONTINUE, "undecided at 40 %")),
            id="an undecided test",
        ),
        pytest.param(None, id="no data at all"),
    ],
)
def test_experiment_without_a_decision_by_its_maximum_duration_is_inconclusive(
    evidence: Evidence | None,
) -> None:
    run = FakeController(ABTEST)
    assert run.tick(evidence, after=3599).status.phase is Phase.PROGRESSING
    decision = run.tick(evidence, after=1)
    status = decision.status
    assert (status.phase, status.outcome) == (Phase.INCONCLUSIVE, "inconclusive")
    assert status.message.startswith("inconclusive: the A/B test on accuracy was undecided")
    assert "maximum duration of 3600 s" in status.message
    assert status.message.endswith("v1 stays stable and v2 gets no traffic")
    assert kinds(decision) == ("rollout.inconclusive",)
    assert decision.routing == ALL_STABLE


def test_an_experiment_in_progress_keeps_how_much_longer_it_may_take() -> None:
    run = FakeController(ABTEST)
    assert run.status.experiment is not None
    planned = int(run.status.experiment["samples_per_arm"])
    undecided = ExperimentDecision(Outcome.CONTINUE, "undecided", n_stable=700, n_candidate=300)
    status = run.tick(Evidence(experiment=undecided), after=60).status
    assert status.experiment is not None
    assert status.experiment["horizon"]["more"] == planned - 300
    assert status.experiment["horizon"]["expected_s"] == pytest.approx((planned - 300) / 5.0)


def test_failing_background_gate_stops_an_experiment() -> None:
    run = FakeController(make_spec("abtest", {"metric": "error_rate", "mde": 0.01}, gates=GATES))
    decision = run.tick(
        Evidence(background=FAIL, experiment=experiment(Outcome.CANDIDATE_BETTER)), after=1
    )
    assert decision.status.phase is Phase.ROLLED_BACK
    assert decision.status.outcome == "rolled_back"


# -- shadow, readiness, and gates while paused -----------------------------------------------


def test_shadow_ends_validated_with_mirrors_off() -> None:
    run = FakeController(make_spec("shadow", {"mirror": 50}, gates=GATES))
    assert run.routing == split(100, 0, mirror=50)
    decision = run.tick(PASSING, after=60)
    status = decision.status
    assert (status.phase, status.outcome) == (Phase.VALIDATED, "validated")
    assert (status.weight, status.mirror) == (0, 0)
    assert decision.routing == ALL_STABLE
    assert decision.routing.mirrors == {}
    assert status.previous_stable is None


@pytest.mark.parametrize(
    "paused", [pytest.param(False, id="while progressing"), pytest.param(True, id="while paused")]
)
@pytest.mark.parametrize("index", CANARY_STEPS)
def test_candidate_that_cannot_serve_fails_the_rollout(index: int, paused: bool) -> None:
    run = _canary_at(index, paused=paused)
    problem = "model file models/iris-v2.onnx is missing"
    decision = run.tick(Evidence(candidate_ready=False, candidate_problem=problem), after=1)
    status = decision.status
    assert (status.phase, status.outcome) == (Phase.FAILED, "failed")
    assert problem in status.message
    assert kinds(decision) == (FAILED,)
    assert problem in decision.notes[0].message
    assert decision.routing == ALL_STABLE


@pytest.mark.parametrize("index", CANARY_STEPS)
def test_gates_keep_judging_while_paused(index: int) -> None:
    run = _canary_at(index, paused=True)
    decision = run.tick(FAILING, after=1)
    assert decision.status.phase is Phase.ROLLED_BACK
    assert decision.routing == ALL_STABLE
    assert kinds(decision) == (ROLLED_BACK,)


def test_failure_count_keeps_counting_across_a_pause() -> None:
    run = FakeController(LIMIT_3)
    run.tick(FAILING, after=1)
    run.command(CommandKind.PAUSE)
    assert run.status.failures == 1
    run.tick(FAILING, after=1)
    assert (run.status.phase, run.status.failures) == (Phase.PAUSED, 2)
    assert run.tick(FAILING, after=1).status.phase is Phase.ROLLED_BACK


def test_judgement_figures_are_kept_on_the_status() -> None:
    run = FakeController(CANARY)
    run.drive_to(2)
    run.tick(UNDECIDED, after=1)
    assert run.status.judgement == {
        "background": INCONCLUSIVE.to_dict(),
        "step": INCONCLUSIVE.to_dict(),
    }


def test_a_paused_step_goes_on_from_where_it_was_paused() -> None:
    spec = make_spec("canary", {"weights": [10], "pause_s": 3600})
    status = start(spec, stable="v1", now=0.0).status
    assert status.step_index == 1  # the pause after set_weight 10
    status = decide(spec, status, None, 3500.0, Command(CommandKind.PAUSE, "erin")).status
    status = decide(spec, status, None, 9000.0, Command(CommandKind.RESUME, "erin")).status
    # 3500 s of the pause had run before it was paused: 100 s are left, not 3600.
    assert decide(spec, status, None, 9099.0).status.step_index == 1
    after = decide(spec, status, None, 9100.0).status
    assert (after.phase, after.weight) == (Phase.PROMOTED, 100)
