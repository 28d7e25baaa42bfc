"""A rollout's status reads back from its stored form exactly as it was written."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rollout_helpers import GATES, FakeController, make_spec

from rollwise.analysis.experiment import decide_experiment
from rollwise.analysis.gates import Metric
from rollwise.analysis.judge import judge_step
from rollwise.analysis.summary import ArmSummary
from rollwise.rollout import CommandKind, Evidence, Phase, RolloutSpec, RolloutStatus


def _stored(status: RolloutStatus) -> RolloutStatus:
    """The status written as JSON, as the store keeps it, and read back."""
    return RolloutStatus.from_dict(json.loads(json.dumps(status.to_dict())))


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
times = st.floats(min_value=0, max_value=2e9, allow_nan=False)
percents = st.integers(min_value=0, max_value=100)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | times | names,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=8,
)
figures = st.dictionaries(names, json_values, max_size=4)

statuses = st.builds(
    RolloutStatus,
    model=names,
    stable=names,
    candidate=names,
    phase=st.sampled_from(list(Phase)),
    started_s=times,
    step_index=st.integers(0, 50),
    step_started_s=times,
    measure_since_s=times,
    updated_s=times,
    weight=percents,
    mirror=percents,
    preview=st.booleans(),
    failures=st.integers(0, 5),
    message=st.text(max_size=40),
    outcome=st.sampled_from(
        ["", "promoted", "rolled_back", "aborted", "no_difference", "inconclusive"]
    ),
    finished_s=st.none() | times,
    previous_stable=st.none() | names,
    keep_previous_until_s=st.none() | times,
    judgement=st.none() | figures,
    experiment=st.none() | figures,
    actor=names,
    extra=figures,
)


@settings(max_examples=100)
@given(statuses)
def test_any_status_round_trips_through_its_stored_form(status: RolloutStatus) -> None:
    assert RolloutStatus.from_dict(status.to_dict()) == status
    assert _stored(status) == status


def test_stored_phase_is_its_name() -> None:
    spec = make_spec("canary", {"weights": [10]})
    data = FakeController(spec).status.to_dict()
    assert data["phase"] == "progressing"
    assert json.loads(json.dumps(data)) == data


def _canary_with_real_judgements() -> list[RolloutStatus]:
    spec = make_spec("canary", {"weights": [10], "pause_s": 0}, gates=GATES)
    run = FakeController(spec)
    for n in (100, 1000):
        stable, candidate = ArmSummary(9 * n, errors=9 * n // 100), ArmSummary(n, errors=n // 100)
        verdict = judge_step(spec.gates, stable, candidate, weights_percent=(90, 10))
        run.tick(Evidence(background=verdict, step=verdict), after=60)
    assert run.status.judgement, "the status keeps the figures of the judgement"
    run.command(CommandKind.PROMOTE_FULL, after=60)
    run.command(CommandKind.ROLLBACK, after=60)
    return [d.status for d in run.decisions]


def _abtest_with_a_real_decision() -> list[RolloutStatus]:
    spec = make_spec("abtest", {"metric": "accuracy", "mde": 0.05})
    run = FakeController(spec)
    assert run.status.experiment is not None
    result = decide_experiment(
        Metric.ACCURACY,
        ArmSummary(requests=2000, feedback=2000, correct=1400),
        ArmSummary(requests=2000, feedback=2000, correct=1800),
        mde=0.05,
        samples_per_arm=int(run.status.experiment["samples_per_arm"]),
        weights_percent=(50, 50),
    )
    run.tick(Evidence(experiment=result), after=60)
    return [d.status for d in run.decisions]


def _paused_and_failed(spec: RolloutSpec) -> list[RolloutStatus]:
    run = FakeController(spec)
    run.command(CommandKind.PAUSE, actor="ann", reason="lunch")
    run.tick(Evidence(candidate_ready=False, candidate_problem="gone"), after=1)
    return [d.status for d in run.decisions]


def _shadow_paused_and_failed() -> list[RolloutStatus]:
    return _paused_and_failed(make_spec("shadow", {}, gates=GATES))


@pytest.mark.parametrize(
    "run",
    [
        pytest.param(_canary_with_real_judgements, id="a canary judged, promoted, rolled back"),
        pytest.param(_abtest_with_a_real_decision, id="an A/B test decided"),
        pytest.param(_shadow_paused_and_failed, id="a shadow paused, failed"),
    ],
)
def test_statuses_of_real_runs_round_trip(run: Callable[[], list[RolloutStatus]]) -> None:
    history = run()
    assert len(history) >= 2
    for status in history:
        assert _stored(status) == status


def test_status_from_a_newer_version_with_more_fields_still_reads_back() -> None:
    spec = make_spec("canary", {"weights": [10]})
    status = FakeController(spec).status
    data: dict[str, Any] = {**status.to_dict(), "field_of_the_future": 1}
    assert RolloutStatus.from_dict(data) == status


@pytest.mark.parametrize(
    ("phase", "outcome", "active"),
    [
        pytest.param("no_difference", "no_difference", False, id="no difference, as written now"),
        pytest.param("inconclusive", "inconclusive", False, id="inconclusive, as written now"),
        pytest.param(
            "rolled_back", "no_difference", False, id="no difference, as older rollwise wrote it"
        ),
    ],
)
def test_an_ab_test_that_ended_without_a_winner_reads_back_as_stored(
    phase: str, outcome: str, active: bool
) -> None:
    status = FakeController(make_spec("abtest", {"metric": "accuracy", "mde": 0.05})).status
    data = {**status.to_dict(), "phase": phase, "outcome": outcome}
    read = RolloutStatus.from_dict(json.loads(json.dumps(data)))
    assert (read.phase.value, read.outcome, read.phase.active) == (phase, outcome, active)
    assert read.to_dict() == data
