"""Every rollout preset end to end: a real gateway with the controller inside it, the
real iris models (v1 stable sklearn, v2 better ONNX, v3 faulty python), synthetic users
with delayed labels, and the decisions, routing and events read back through the client.

One gateway serves the whole module; each test rolls out its own model (all of them
the same example model files), so tests never see each other's rollouts or metrics.
Nothing is asserted on how long anything took: tests wait, by polling, for the
controller to decide.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from rollwise.client import Client, ClientError
from rollwise.demo.traffic import TRANSPORT_ERROR
from support.gateway import OPERATOR, VIEWER, GatewayProcess, eventually
from support.rollouts import (
    Traffic,
    all_ready,
    example_versions,
    kinds,
    operator_headers,
    rollout_config,
    rollout_events,
    routing_of,
    served_by,
    wait_for_routing,
    wait_for_step,
    wait_until_ended,
)

GOOD = ("v1", "v2")
MODELS: dict[str, Any] = {
    "canary": GOOD,
    "faulty": ("v1", "v3"),
    "linear": GOOD,
    "bluegreen": GOOD,
    "approval": GOOD,
    "shadow": GOOD,
    "shadow_canary": GOOD,
    "abtest": GOOD,
    "abtest_same": None,  # v1 and an identical copy of it, filled in by the fixture
    "steps": GOOD,
    "commands": GOOD,
    "refusals": GOOD,
}

ERRORS = {"metric": "error_rate", "max_increase": 0.03, "min_samples": 100}
ACCURACY = {"metric": "accuracy", "max_decrease": 0.05, "min_samples": 100}
LATENCY = {"metric": "latency_p95_ms", "max_ratio": 3.0, "min_samples": 100}
AGREEMENT = {"metric": "shadow_agreement", "min": 0.7, "min_samples": 100}
SAFETY = [ERRORS, ACCURACY]
# An analysis that cannot decide gives up well before the tests' own timeouts.
ROLLBACK = {"on_inconclusive_after_s": 45}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    versions = example_versions(tmp_path_factory)
    models = dict(MODELS)
    models["abtest_same"] = {"v1": versions["v1"], "v1b": versions["v1"]}
    config = rollout_config(versions, models)
    process = GatewayProcess(tmp_path_factory.mktemp("gateway"), config).start()
    try:
        with Client(process.url, OPERATOR) as client:
            eventually(lambda: all_ready(client), timeout_s=60)
        yield process
    finally:
        process.stop()


def spec(model: str, candidate: str, strategy: str, **sections: Any) -> dict[str, Any]:
    return {"model": model, "candidate": candidate, "strategy": strategy, **sections}


def steps_of(events: list[dict[str, Any]]) -> list[str]:
    """The descriptions of the steps entered, in order."""
    return [e["data"]["description"] for e in events if e["kind"] == "rollout.step"]


def gate_figures(judgement: dict[str, Any], name: str) -> dict[str, Any]:
    """One gate's figures from a judgement (``background`` first, then ``step``)."""
    for part in ("background", "step"):
        for gate in (judgement.get(part) or {}).get("gates", []):
            if gate["gate"] == name:
                return dict(gate)
    raise AssertionError(f"no figures of gate {name} in {judgement}")


def assert_only_failures_of(traffic: Traffic, version: str | None) -> None:
    """Every request got an HTTP answer; the only failures are ``version``'s own 502s."""
    stats = traffic.stats
    assert stats.ok + stats.failed == stats.sent > 0
    assert TRANSPORT_ERROR not in stats.failures_by_status, list(stats.last_errors)
    if version is None:
        assert stats.failed == 0, list(stats.last_errors)
    else:
        assert set(stats.failures_by_status) <= {502}, list(stats.last_errors)
        assert set(stats.failed_by_version) <= {version}, stats.failed_by_version


# -- canary ------------------------------------------------------------------------------


def test_canary_of_a_better_version_is_promoted_and_can_be_rolled_back_afterwards(
    gateway: GatewayProcess, client: Client
) -> None:
    rollout = spec(
        "canary",
        "v2",
        "canary",
        canary={"weights": [20, 50], "pause_s": 2},
        gates=SAFETY,
        rollback=ROLLBACK,
    )
    with Traffic(gateway.url, "canary", seed=1) as traffic:
        started = client.apply(rollout)
        assert started["status"]["phase"] == "progressing"
        assert started["weight"] == 20
        ended = wait_until_ended(client, "canary")
    assert_only_failures_of(traffic, None)
    assert set(traffic.stats.by_version) == {"v1", "v2"}

    status = ended["status"]
    assert (status["phase"], status["outcome"]) == ("promoted", "promoted"), status["message"]
    assert status["weight"] == 100 and status["previous_stable"] == "v1"
    wait_for_routing(client, "canary", "v2", {"v2": 100})
    assert served_by(gateway.url, "canary") == {"v2": 40}

    events = rollout_events(client, "canary")
    assert kinds(events) == [
        "rollout.started",
        *["rollout.step"] * 3,
        "rollout.analysis_passed",
        *["rollout.step"] * 3,
        "rollout.analysis_passed",
        "rollout.step",
        "rollout.promoted",
    ]
    assert steps_of(events) == [
        "set weight 20 %",
        "pause 2 s",
        "analyze 2 gates",
        "set weight 50 %",
        "pause 2 s",
        "analyze 2 gates",
        "set weight 100 %",
    ]
    passed = [e for e in events if e["kind"] == "rollout.analysis_passed"]
    for event in passed:
        verdicts = {g["gate"]: g["verdict"] for g in event["data"]["judgement"]["gates"]}
        assert verdicts == {"error_rate.max_increase": "pass", "accuracy.max_decrease": "pass"}
    assert events[-1]["message"].startswith("v2 promoted to stable (was v1)")

    # After the promotion, a rollback sends everyone back to v1 at once.
    undone = client.rollback("canary", "v2 confuses a customer's flowers")
    assert undone["status"]["phase"] == "rolled_back"
    assert undone["status"]["outcome"] == "rolled_back"
    wait_for_routing(client, "canary", "v1", {"v1": 100})
    assert served_by(gateway.url, "canary") == {"v1": 40}
    last = rollout_events(client, "canary")[-1]
    assert last["kind"] == "rollout.rolled_back"
    assert last["data"]["after_promotion"] is True
    assert last["actor"] == "ops"
    assert "rolled back to v1 by ops (v2 confuses a customer's flowers)" in last["message"]
    with pytest.raises(ClientError) as twice:
        client.rollback("canary")
    assert twice.value.status == 409
    assert "has ended (rolled_back); v1 is serving, nothing to roll back" in str(twice.value)


def test_canary_of_a_faulty_version_is_rolled_back_by_a_failing_gate(
    gateway: GatewayProcess, client: Client
) -> None:
    rollout = spec(
        "faulty",
        "v3",
        "canary",
        canary={"weights": [30, 60], "pause_s": 2},
        gates=[ERRORS, LATENCY, ACCURACY],
        rollback=ROLLBACK,
    )
    with Traffic(gateway.url, "faulty", seed=2) as traffic:
        client.apply(rollout)
        ended = wait_until_ended(client, "faulty")
    # v3 answered some users while it had its share; nobody else ever failed.
    assert_only_failures_of(traffic, "v3")
    assert traffic.stats.by_version.get("v3", 0) > 0

    status = ended["status"]
    assert (status["phase"], status["outcome"]) == ("rolled_back", "rolled_back")
    assert status["actor"] == "controller"
    wait_for_routing(client, "faulty", "v1", {"v1": 100})
    assert served_by(gateway.url, "faulty") == {"v1": 40}

    events = rollout_events(client, "faulty")
    names = kinds(events)
    assert names[0] == "rollout.started" and names[-1] == "rollout.rolled_back"
    assert set(names[1:-1]) == {"rollout.step"}, names
    assert "set weight 60 %" not in steps_of(events)
    rollback = events[-1]
    assert rollback["message"] == status["message"]
    assert rollback["message"].startswith("rolled back to v1: gate failed: ")
    # The event names every gate that failed, with the figures it failed on.
    judgement = rollback["data"]["judgement"]
    failed = [
        gate
        for part in ("background", "step")
        for gate in (judgement.get(part) or {}).get("gates", [])
        if gate["verdict"] == "fail"
    ]
    assert failed, judgement
    for gate in failed:
        assert gate["gate"] in {
            "error_rate.max_increase",
            "latency_p95_ms.max_ratio",
            "accuracy.max_decrease",
        }
        assert gate["description"] in rollback["message"]

    # Afterwards, the users are all back on v1 and every request succeeds.
    with Traffic(gateway.url, "faulty", seed=3, feedback=False) as after:
        eventually(lambda: after.live().sent >= 100)
    assert_only_failures_of(after, None)
    assert set(after.stats.by_version) == {"v1"}


# -- linear ------------------------------------------------------------------------------


def test_linear_with_an_increment_that_does_not_divide_100_ends_on_exactly_100(
    gateway: GatewayProcess, client: Client
) -> None:
    rollout = spec(
        "linear",
        "v2",
        "linear",
        linear={"increment": 40, "interval_s": 1},
        gates=SAFETY,
        rollback=ROLLBACK,
    )
    with Traffic(gateway.url, "linear", seed=4) as traffic:
        client.apply(rollout)
        ended = wait_until_ended(client, "linear")
    assert_only_failures_of(traffic, None)
    assert ended["status"]["phase"] == "promoted", ended["status"]["message"]
    wait_for_routing(client, "linear", "v2", {"v2": 100})

    events = rollout_events(client, "linear")
    assert kinds(events)[-1] == "rollout.promoted"
    assert kinds(events).count("rollout.analysis_passed") == 2
    set_weights = [
        e["data"]["weight"]
        for e in events
        if e["kind"] == "rollout.step" and e["data"]["description"].startswith("set weight")
    ]
    assert set_weights == [40, 80, 100]
    assert steps_of(events)[-1] == "set weight 100 %"


# -- blue-green --------------------------------------------------------------------------


def test_bluegreen_previews_mirrors_analyzes_and_switches(
    gateway: GatewayProcess, client: Client
) -> None:
    rollout = spec(
        "bluegreen",
        "v2",
        "bluegreen",
        bluegreen={"mirror": 50, "analysis_max_s": 45},
        gates=[ERRORS, ACCURACY, AGREEMENT],
    )
    started = client.apply(rollout)
    assert started["status"]["preview"] is True
    # In preview (and before any traffic, so the analysis cannot pass yet): users stay
    # on v1, half their requests are copied to v2, and only a preview request reaches v2.
    wait_for_routing(client, "bluegreen", "v1", {"v1": 100}, {"v2": 50})
    assert served_by(gateway.url, "bluegreen") == {"v1": 40}
    assert served_by(gateway.url, "bluegreen", 5, headers=operator_headers("v2")) == {"v2": 5}
    assert client.rollout("bluegreen")["status"]["step_index"] == 1
    # Preview requests are measured apart from the traffic routing chose.
    v2 = next(v for v in client.model("bluegreen")["versions"] if v["name"] == "v2")
    assert (v2["preview"] or {}).get("requests") == 5
    assert v2["served"] is None

    with Traffic(gateway.url, "bluegreen", seed=5) as traffic:
        ended = wait_until_ended(client, "bluegreen")
    assert_only_failures_of(traffic, None)
    status = ended["status"]
    assert status["phase"] == "promoted", status["message"]
    assert status["keep_previous_until_s"] is not None
    wait_for_routing(client, "bluegreen", "v2", {"v2": 100})
    assert served_by(gateway.url, "bluegreen") == {"v2": 40}

    events = rollout_events(client, "bluegreen")
    assert kinds(events) == [
        "rollout.started",
        "rollout.step",
        "rollout.step",
        "rollout.analysis_passed",
        "rollout.step",
        "rollout.promoted",
    ]
    assert steps_of(events) == [
        "preview with 50 % mirrored",
        "analyze 3 gates",
        "switch all traffic",
    ]
    # The preview was judged on the mirrored requests: the agreement was measured.
    agreement = gate_figures({"step": events[3]["data"]["judgement"]}, "shadow_agreement.min")
    assert agreement["verdict"] == "pass"
    assert agreement["n_candidate"] >= 100


def test_bluegreen_without_auto_switch_waits_for_promote(
    gateway: GatewayProcess, client: Client
) -> None:
    client.apply(spec("approval", "v2", "bluegreen", bluegreen={"auto_switch": False}))
    waiting = wait_for_step(client, "approval", 1)
    assert waiting["plan"][1] == {"pause": {}}
    # A few controller ticks later it still waits, with users on v1.
    time.sleep(1.5)
    waiting = client.rollout("approval")
    assert waiting["status"]["phase"] == "progressing"
    assert waiting["status"]["step_index"] == 1
    wait_for_routing(client, "approval", "v1", {"v1": 100})

    promoted = client.promote("approval", "looks right in preview")
    assert promoted["status"]["phase"] == "promoted"
    wait_for_routing(client, "approval", "v2", {"v2": 100})
    events = rollout_events(client, "approval")
    assert kinds(events) == [
        "rollout.started",
        "rollout.step",
        "rollout.step",
        "rollout.step_skipped",
        "rollout.step",
        "rollout.promoted",
    ]
    assert steps_of(events) == ["preview", "pause until promoted", "switch all traffic"]
    assert "let go by ops (looks right in preview)" in events[3]["message"]


# -- shadow ------------------------------------------------------------------------------


def test_shadow_ends_validated_with_stable_unchanged_and_figures_for_both_versions(
    gateway: GatewayProcess, client: Client
) -> None:
    rollout = spec(
        "shadow",
        "v2",
        "shadow",
        shadow={"mirror": 100, "max_duration_s": 45},
        gates=[ERRORS, ACCURACY, AGREEMENT],
    )
    with Traffic(gateway.url, "shadow", seed=6) as traffic:
        client.apply(rollout)
        wait_for_routing(client, "shadow", "v1", {"v1": 100}, {"v2": 100})
        ended = wait_until_ended(client, "shadow")
    assert_only_failures_of(traffic, None)
    # Nobody was ever answered by the shadow.
    assert set(traffic.stats.by_version) == {"v1"}

    status = ended["status"]
    assert (status["phase"], status["outcome"]) == ("validated", "validated"), status["message"]
    assert status["message"].startswith("v2 validated: analysis passed: error_rate (candidate")
    # v1 stays stable and serves everyone; nothing is mirrored any more.
    wait_for_routing(client, "shadow", "v1", {"v1": 100}, {})

    agreement = gate_figures(status["judgement"], "shadow_agreement.min")
    assert 0.7 < agreement["candidate_value"] <= 1.0
    assert agreement["n_candidate"] >= 100
    accuracy = gate_figures(status["judgement"], "accuracy.max_decrease")
    assert accuracy["verdict"] == "pass"
    assert accuracy["n_stable"] >= 100 and accuracy["n_candidate"] >= 100
    # v1 is right on about 83 % of the iris rows, v2 on 95 %.
    assert 0.6 < accuracy["stable_value"] < 0.95
    assert 0.85 < accuracy["candidate_value"] <= 1.0

    events = rollout_events(client, "shadow")
    assert kinds(events) == [
        "rollout.started",
        "rollout.step",
        "rollout.step",
        "rollout.analysis_passed",
        "rollout.step",
        "rollout.validated",
    ]
    assert steps_of(events) == ["mirror 100 %", "analyze 3 gates", "stop mirroring"]


def test_shadow_then_canary_ends_promoted(gateway: GatewayProcess, client: Client) -> None:
    rollout = spec(
        "shadow_canary",
        "v2",
        "shadow",
        shadow={
            "mirror": 100,
            "max_duration_s": 45,
            "then": {"strategy": "canary", "canary": {"weights": [50], "pause_s": 1}},
        },
        gates=SAFETY,
        rollback=ROLLBACK,
    )
    with Traffic(gateway.url, "shadow_canary", seed=7) as traffic:
        client.apply(rollout)
        ended = wait_until_ended(client, "shadow_canary")
    assert_only_failures_of(traffic, None)
    assert ended["status"]["phase"] == "promoted", ended["status"]["message"]
    wait_for_routing(client, "shadow_canary", "v2", {"v2": 100})

    events = rollout_events(client, "shadow_canary")
    assert steps_of(events) == [
        "mirror 100 %",
        "analyze 2 gates",
        "stop mirroring",
        "set weight 50 %",
        "pause 1 s",
        "analyze 2 gates",
        "set weight 100 %",
    ]
    assert kinds(events).count("rollout.analysis_passed") == 2
    assert kinds(events)[-1] == "rollout.promoted"


# -- A/B test ----------------------------------------------------------------------------


def test_abtest_on_accuracy_promotes_the_better_version(
    gateway: GatewayProcess, client: Client
) -> None:
    rollout = spec(
        "abtest",
        "v2",
        "abtest",
        abtest={
            "split": 50,
            "metric": "accuracy",
            "mde": 0.08,
            "baseline": 0.83,
            "power": 0.6,
            "max_duration_s": 45,
        },
        gates=[ERRORS],
    )
    with Traffic(gateway.url, "abtest", seed=8, users=1000) as traffic:
        client.apply(rollout)
        ended = wait_until_ended(client, "abtest")
    assert_only_failures_of(traffic, None)

    status = ended["status"]
    assert (status["phase"], status["outcome"]) == ("promoted", "promoted"), status["message"]
    wait_for_routing(client, "abtest", "v2", {"v2": 100})
    experiment = status["experiment"]
    assert experiment["metric"] == "accuracy" and experiment["samples_per_arm"] > 0
    decision = experiment["decision"]
    assert decision["outcome"] == "candidate_better"
    # v2 is right about 12 points more often than v1.
    assert 0 < decision["interval"]["low"] < decision["estimate"] < decision["interval"]["high"]
    assert decision["n_stable"] >= 100 and decision["n_candidate"] >= 100
    assert decision["srm"] is not None and decision["srm"]["mismatch"] is False
    # The split is by user, so the check counts distinct users, not requests.
    users = decision["srm"]["observed"]
    assert 0 < sum(users) <= 1000

    events = rollout_events(client, "abtest")
    assert kinds(events) == [
        "rollout.started",
        "rollout.step",
        "rollout.experiment_decided",
        "rollout.promoted",
    ]
    assert steps_of(events) == ["A/B test on accuracy at 50 %"]
    assert events[2]["data"]["winner"] == "v2"
    assert events[2]["message"].startswith("A/B test: v2 is better on accuracy")


def test_abtest_of_identical_versions_undecided_at_its_limit_keeps_stable_as_inconclusive(
    gateway: GatewayProcess, client: Client
) -> None:
    # v1b is v1 loaded from the same file: the true effect is exactly zero, and with an
    # mde this small the planned sample is far beyond what arrives before the limit.
    rollout = spec(
        "abtest_same",
        "v1b",
        "abtest",
        abtest={
            "split": 50,
            "metric": "accuracy",
            "mde": 0.02,
            "baseline": 0.83,
            "alpha": 0.01,
            "max_duration_s": 4,
            "min_samples": 50,
        },
        gates=[ERRORS],
    )
    with Traffic(gateway.url, "abtest_same", seed=9, users=1000) as traffic:
        client.apply(rollout)
        ended = wait_until_ended(client, "abtest_same")
    assert_only_failures_of(traffic, None)
    assert set(traffic.stats.by_version) == {"v1", "v1b"}

    status = ended["status"]
    assert (status["phase"], status["outcome"]) == ("inconclusive", "inconclusive")
    assert (
        "the A/B test on accuracy was undecided when its maximum duration of 4 s passed"
        in (status["message"])
    )
    assert status["message"].endswith("v1 stays stable and v1b gets no traffic")
    wait_for_routing(client, "abtest_same", "v1", {"v1": 100})

    events = rollout_events(client, "abtest_same")
    assert kinds(events) == ["rollout.started", "rollout.step", "rollout.inconclusive"]
    assert events[-1]["data"]["outcome"] == "inconclusive"
    assert events[-1]["message"] == status["message"]


# -- custom steps and a person's commands ------------------------------------------------


def test_custom_steps_wait_at_a_pause_until_promote(
    gateway: GatewayProcess, client: Client
) -> None:
    steps = [{"set_weight": 25}, {"pause": {}}, {"set_weight": 50}, {"pause": 1}]
    client.apply(spec("steps", "v2", "steps", steps=steps))
    wait_for_step(client, "steps", 1)
    wait_for_routing(client, "steps", "v1", {"v1": 75, "v2": 25})
    time.sleep(1.5)
    waiting = client.rollout("steps")["status"]
    assert (waiting["phase"], waiting["step_index"], waiting["weight"]) == ("progressing", 1, 25)

    let_go = client.promote("steps")
    assert let_go["status"]["phase"] == "progressing"
    assert let_go["status"]["weight"] == 50
    wait_for_routing(client, "steps", "v1", {"v1": 50, "v2": 50})
    ended = wait_until_ended(client, "steps")
    assert ended["status"]["phase"] == "promoted"
    wait_for_routing(client, "steps", "v2", {"v2": 100})
    assert kinds(rollout_events(client, "steps")) == [
        "rollout.started",
        "rollout.step",
        "rollout.step",
        "rollout.step_skipped",
        "rollout.step",
        "rollout.step",
        "rollout.promoted",
    ]


def test_pause_resume_and_abort_of_a_running_canary(
    gateway: GatewayProcess, client: Client
) -> None:
    client.apply(spec("commands", "v2", "canary", canary={"weights": [30], "pause_s": 60}))
    wait_for_routing(client, "commands", "v1", {"v1": 70, "v2": 30})

    paused = client.pause("commands", "holiday traffic")
    assert paused["status"]["phase"] == "paused"
    assert paused["status"]["message"] == "paused by ops (holiday traffic)"
    time.sleep(1.5)  # a few controller ticks: nothing moves while paused
    assert client.rollout("commands")["status"]["phase"] == "paused"
    wait_for_routing(client, "commands", "v1", {"v1": 70, "v2": 30})
    with pytest.raises(ClientError) as again:
        client.pause("commands")
    assert again.value.status == 409 and "already paused" in str(again.value)

    resumed = client.resume("commands")
    assert resumed["status"]["phase"] == "progressing"
    with pytest.raises(ClientError) as not_paused:
        client.resume("commands")
    assert not_paused.value.status == 409 and "not paused" in str(not_paused.value)

    aborted = client.abort("commands", "wrong candidate")
    status = aborted["status"]
    assert (status["phase"], status["outcome"]) == ("rolled_back", "aborted")
    assert status["message"] == "rolled back to v1: aborted by ops (wrong candidate)"
    wait_for_routing(client, "commands", "v1", {"v1": 100})
    with pytest.raises(ClientError) as ended:
        client.pause("commands")
    assert ended.value.status == 409 and "has ended (rolled_back)" in str(ended.value)

    events = rollout_events(client, "commands")
    assert kinds(events) == [
        "rollout.started",
        "rollout.step",
        "rollout.step",
        "rollout.paused",
        "rollout.resumed",
        "rollout.rolled_back",
    ]
    assert [e["actor"] for e in events[3:]] == ["ops", "ops", "ops"]


# -- refusals ----------------------------------------------------------------------------


def test_refusals_name_what_is_wrong(gateway: GatewayProcess, client: Client) -> None:
    first = spec("refusals", "v2", "canary", canary={"weights": [10], "pause_s": 60})
    client.apply(first)

    with pytest.raises(ClientError) as busy:
        client.apply(first)
    assert busy.value.status == 409
    assert "'refusals' has a rollout in progress" in str(busy.value)
    assert "replace" in str(busy.value)

    second = spec("refusals", "v2", "canary", canary={"weights": [20], "pause_s": 60})
    replaced = client.apply(second, replace=True)
    assert replaced["status"]["phase"] == "progressing" and replaced["weight"] == 20
    newest, older = client.rollouts("refusals")[:2]
    assert newest["id"] == replaced["id"]
    assert (older["phase"], older["status"]["outcome"]) == ("rolled_back", "aborted")
    assert "replaced by a new rollout" in older["status"]["message"]
    wait_for_routing(client, "refusals", "v1", {"v1": 80, "v2": 20})
    assert [r["id"] for r in client.rollouts("refusals", active=True)] == [replaced["id"]]

    with pytest.raises(ClientError) as strategy:
        client.apply({**second, "strategy": "blue-green"})
    assert strategy.value.status == 422
    assert "strategy 'blue-green' is not one of canary, linear, bluegreen" in str(strategy.value)

    with pytest.raises(ClientError) as candidate:
        client.apply({**second, "candidate": "v9"}, replace=True)
    assert candidate.value.status == 404
    assert "model 'refusals' has no version 'v9'" in str(candidate.value)

    with pytest.raises(ClientError) as route:
        client.set_routing("refusals", {"v1": 100})
    assert route.value.status == 409
    assert "has a rollout in progress" in str(route.value)
    assert "force" in str(route.value)

    with Client(gateway.url, VIEWER) as viewer:
        with pytest.raises(ClientError) as denied:
            viewer.apply(second, replace=True)
        assert denied.value.status == 403
        assert "operator" in str(denied.value)
        # A viewer still reads.
        assert viewer.rollout("refusals")["id"] == replaced["id"]

    # None of the refusals changed the rollout in progress.
    current = client.rollout("refusals")
    assert current["id"] == replaced["id"]
    assert current["status"]["phase"] == "progressing"
    # Routing by hand with force ends the rollout first, then takes effect.
    forced = client.set_routing("refusals", {"v1": 90, "v2": 10}, force=True)
    assert forced["weights"] == {"v1": 90, "v2": 10}
    ended = client.rollout("refusals")["status"]
    assert (ended["phase"], ended["outcome"], ended["actor"]) == ("rolled_back", "aborted", "ops")
    assert "routing set by hand" in ended["message"]
    wait_for_routing(client, "refusals", "v1", {"v1": 90, "v2": 10})
    assert routing_of(client, "refusals").mirrors == {}
