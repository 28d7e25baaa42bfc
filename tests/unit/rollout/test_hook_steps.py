"""What a tick decides at a hook step, tick by tick on a fake clock: a 2xx lets the
step go, a failure rolls back or pauses with the hook's answer in the reason, a confirm
waits for its 2xx (or its limit), and an outcome of another step never counts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rollout_helpers import (
    ALL_STABLE,
    FAILING,
    PAUSED,
    PROMOTED,
    ROLLED_BACK,
    STEP,
    FakeController,
    kinds,
    split,
)

from rollwise.rollout import CommandKind, Evidence, Phase, parse_rollout_spec
from rollwise.rollout.hook_steps import HOOK_EVENT, hook_payload
from rollwise.rollout.hooks import HookKind, HookOutcome

HOOK = "http://127.0.0.1:9/hook"


def spec_of(*steps: Any, **top: Any) -> Any:
    raw = {"model": "iris", "candidate": "v2", "strategy": "steps", "steps": list(steps), **top}
    return parse_rollout_spec(raw)


def answer(run: FakeController, status: int | None, *, body: str = "", error: str = "") -> Evidence:
    """The outcome of the current step's call, as the controller hands it over."""
    ok = status is not None and 200 <= status < 300
    outcome = HookOutcome(
        run.status.step_index,
        run.status.step_started_s,
        HOOK,
        ok,
        status,
        error if status is None else "",
        body,
        attempts=3 if not ok else 1,
    )
    return Evidence(hook=outcome)


WEBHOOK_THEN_ALL = ({"webhook": {"url": HOOK}}, {"set_weight": 100})


def test_a_webhook_step_holds_at_no_traffic_until_its_call_ends() -> None:
    run = FakeController(spec_of({"set_weight": 0}, *WEBHOOK_THEN_ALL))

    decision = run.tick(Evidence(), after=60)

    assert run.status.step_index == 1
    assert run.routing == split(100, 0)
    assert not decision.notes


@pytest.mark.parametrize(
    ("status", "body", "error", "phase", "reason"),
    [
        pytest.param(
            200,
            "",
            "",
            Phase.PROMOTED,
            "webhook passed: http://127.0.0.1:9/hook answered 200",
            id="a 2xx lets the step go",
        ),
        pytest.param(
            204,
            "",
            "",
            Phase.PROMOTED,
            "answered 204",
            id="any 2xx lets the step go",
        ),
        pytest.param(
            500,
            "suite failed: 3 of 40",
            "",
            Phase.ROLLED_BACK,
            "webhook failed: http://127.0.0.1:9/hook answered 500: 'suite failed: 3 of 40' "
            "after 3 attempts",
            id="a 500 rolls back, saying what the hook answered",
        ),
        pytest.param(
            302,
            "",
            "",
            Phase.ROLLED_BACK,
            "answered 302",
            id="a redirect is not a success",
        ),
        pytest.param(
            None,
            "",
            "timed out after 2 s",
            Phase.ROLLED_BACK,
            "hook timed out after 2 s",
            id="a timeout rolls back",
        ),
    ],
)
def test_a_webhook_answer_decides_the_step(
    status: int | None, body: str, error: str, phase: Phase, reason: str
) -> None:
    run = FakeController(spec_of(*WEBHOOK_THEN_ALL))

    decision = run.tick(answer(run, status, body=body, error=error), after=1)

    assert run.status.phase is phase
    assert reason in run.status.message
    assert kinds(decision)[0] == HOOK_EVENT
    assert decision.notes[0].data["status_code"] == status
    assert decision.notes[0].data["hook"] == "webhook"


def test_a_failing_webhook_with_on_failure_pause_pauses_and_a_resume_calls_it_again() -> None:
    run = FakeController(
        spec_of({"set_weight": 10}, {"webhook": {"url": HOOK, "on_failure": "pause"}})
    )
    failed = answer(run, 503, body="load test: p99 too high")

    decision = run.tick(failed, after=1)

    assert run.status.phase is Phase.PAUSED
    assert kinds(decision) == (HOOK_EVENT, PAUSED)
    assert "answered 503: 'load test: p99 too high'" in run.status.message
    assert run.routing == split(90, 10)  # paused keeps the weights

    run.command(CommandKind.RESUME, after=5)

    # The step starts anew: the old outcome no longer counts, a new call is due.
    run.tick(failed, after=1)
    assert run.status.phase is Phase.PROGRESSING
    run.tick(answer(run, 200), after=1)
    assert run.status.phase is Phase.PROMOTED


def test_an_outcome_of_another_step_never_lets_this_one_go() -> None:
    run = FakeController(spec_of(*WEBHOOK_THEN_ALL))
    stale = HookOutcome(0, run.status.step_started_s - 30, HOOK, True, 200)

    decision = run.tick(Evidence(hook=stale), after=1)

    assert run.status.step_index == 0
    assert not decision.notes


def test_background_gates_still_roll_back_while_a_hook_runs() -> None:
    run = FakeController(spec_of({"set_weight": 10}, *WEBHOOK_THEN_ALL))

    run.tick(FAILING, after=1)

    assert run.status.phase is Phase.ROLLED_BACK
    assert run.routing == ALL_STABLE


def test_a_failing_pre_rollout_hook_never_gives_the_candidate_traffic() -> None:
    spec = parse_rollout_spec(
        {
            "model": "iris",
            "candidate": "v2",
            "strategy": "canary",
            "canary": {"weights": [10, 50], "pause_s": 5},
            "hooks": {"pre_rollout": [{"url": HOOK}]},
        }
    )
    run = FakeController(spec)
    assert run.first.routing == split(100, 0)

    decision = run.tick(answer(run, 500, body="acceptance tests failed"), after=1)

    assert run.status.phase is Phase.ROLLED_BACK
    assert "pre-rollout hook failed" in run.status.message
    assert "acceptance tests failed" in run.status.message
    assert ROLLED_BACK in kinds(decision)
    assert all(d.routing in (None, split(100, 0), ALL_STABLE) for d in run.decisions)


def test_a_confirm_waits_through_refusals_noting_each_new_answer_then_goes_on() -> None:
    run = FakeController(
        spec_of({"set_weight": 10}, {"confirm": {"url": HOOK}}, {"set_weight": 100})
    )

    first = run.tick(answer(run, 409, body="not yet"), after=1)
    again = run.tick(answer(run, 409, body="not yet"), after=5)
    changed = run.tick(answer(run, None, error="timed out after 10 s"), after=5)
    waiting = run.tick(Evidence(), after=500)

    assert kinds(first) == (HOOK_EVENT,)
    assert "waiting for confirmation" in first.notes[0].message
    assert not again.notes  # the same answer: no new event
    assert kinds(changed) == (HOOK_EVENT,)
    assert not waiting.notes
    assert run.status.phase is Phase.PROGRESSING
    assert run.routing == split(90, 10)

    done = run.tick(answer(run, 200), after=5)

    assert run.status.phase is Phase.PROMOTED
    assert kinds(done)[:2] == (HOOK_EVENT, STEP)
    assert PROMOTED in kinds(done)


@pytest.mark.parametrize(
    ("on_timeout", "phase"),
    [
        pytest.param("pause", Phase.PAUSED, id="pauses for a person after max_wait_s"),
        pytest.param("rollback", Phase.ROLLED_BACK, id="rolls back after max_wait_s"),
    ],
)
def test_a_confirm_that_never_comes_gives_up_at_max_wait(on_timeout: str, phase: Phase) -> None:
    confirm = {"url": HOOK, "max_wait_s": 60, "on_timeout": on_timeout}
    run = FakeController(spec_of({"set_weight": 10}, {"confirm": confirm}, {"set_weight": 100}))

    run.tick(answer(run, 409), after=59)
    assert run.status.phase is Phase.PROGRESSING
    run.tick(answer(run, 409), after=1)

    assert run.status.phase is phase
    assert "not confirmed within 60 s (last: http://127.0.0.1:9/hook answered 409" in (
        run.status.message
    )


def test_an_operators_promote_lets_a_confirm_go_without_its_answer() -> None:
    run = FakeController(spec_of({"confirm": {"url": HOOK}}, {"set_weight": 100}))

    run.command(CommandKind.PROMOTE, after=3)

    assert run.status.phase is Phase.PROMOTED


def test_the_payload_carries_model_versions_phase_step_and_judgement() -> None:
    run = FakeController(spec_of({"set_weight": 10}, *WEBHOOK_THEN_ALL))

    payload = hook_payload(run.spec, run.status, HookKind.WEBHOOK, rollout_id=7, now=run.now)

    assert payload["hook"] == "webhook"
    assert payload["rollout_id"] == 7
    assert (payload["model"], payload["stable"], payload["candidate"]) == ("iris", "v1", "v2")
    assert payload["phase"] == "progressing"
    assert payload["weight"] == 10
    assert payload["step"] == {
        "index": 1,
        "number": 2,
        "of": 3,
        "description": f"call webhook {HOOK} (rollback on failure)",
    }
    assert payload["judgement"] == {}


@given(
    codes=st.lists(st.one_of(st.none(), st.integers(100, 599)), min_size=1, max_size=20),
    waits=st.lists(st.floats(0, 30), min_size=20, max_size=20),
)
def test_a_confirm_goes_on_exactly_when_a_2xx_arrives(
    codes: list[int | None], waits: list[float]
) -> None:
    run = FakeController(
        spec_of({"set_weight": 10}, {"confirm": {"url": HOOK}}, {"set_weight": 100})
    )
    for code, wait in zip(codes, waits, strict=False):
        run.tick(answer(run, code, error="refused"), after=wait)
        if code is not None and 200 <= code < 300:
            assert run.status.phase is Phase.PROMOTED
            return
        assert run.status.phase is Phase.PROGRESSING
        assert run.routing == split(90, 10)
