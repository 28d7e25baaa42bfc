"""Routing over the gRPC port: weights split the calls within binomial bounds, a user
(a sticky key in the call's metadata) keeps one version, the same one REST gives that
user, and shadows see the gRPC traffic as they see REST's."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tritonclient.grpc as triton

from support.gateway import OPERATOR, GatewayProcess, eventually, gateway_config
from support.grpc_calls import (
    SETOSA,
    answered_version,
    grpc_address,
    triton_client,
    triton_rows,
    with_grpc_port,
)

CALLS = 400
CANDIDATE_SHARE = 0.3
USERS = 60
SIGMAS = 5.0
"""How far from the expected count a binomial count may fall: odds of a false failure
under one in a million."""


@pytest.fixture(scope="module")
def config(iris_dir: Path) -> dict[str, Any]:
    return with_grpc_port(gateway_config(iris_dir))


@pytest.fixture(scope="module")
def gateway(
    config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path_factory.mktemp("grpc-routing"), config).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(
    config: dict[str, Any], gateway: GatewayProcess
) -> Iterator[triton.InferenceServerClient]:
    with triton_client(grpc_address(config)) as opened:
        yield opened


@pytest.fixture(scope="module")
def ops(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with gateway.client(OPERATOR) as opened:
        yield opened


def route(
    ops: httpx.Client, weights: dict[str, int], mirrors: dict[str, int] | None = None
) -> None:
    response = ops.put(
        "/api/v1/models/echo/routing", json={"weights": weights, "mirrors": mirrors or {}}
    )
    assert response.status_code == 200, response.text


def version_for(client: triton.InferenceServerClient, user: str | None) -> str:
    headers = {"x-user-id": user} if user is not None else None
    return answered_version(client.infer("echo", [triton_rows([SETOSA])], headers=headers))


def within_binomial_bound(count: int, trials: int, share: float) -> bool:
    spread = SIGMAS * math.sqrt(trials * share * (1 - share))
    return abs(count - trials * share) <= spread


def test_weights_split_calls_without_a_sticky_key(
    client: triton.InferenceServerClient, ops: httpx.Client
) -> None:
    route(ops, {"a": 70, "b": 30})
    answered = Counter(version_for(client, None) for _ in range(CALLS))
    assert set(answered) <= {"a", "b"}
    assert within_binomial_bound(answered["b"], CALLS, CANDIDATE_SHARE), answered


def test_a_user_keeps_one_version_the_one_rest_gives_them(
    client: triton.InferenceServerClient, ops: httpx.Client, gateway: GatewayProcess
) -> None:
    route(ops, {"a": 70, "b": 30})
    seen: dict[str, set[str]] = {}
    for round_ in range(3):
        for index in range(USERS):
            user = f"user-{index}"
            seen.setdefault(user, set()).add(version_for(client, user))
        assert all(len(versions) == 1 for versions in seen.values()), round_
    by_user = {user: versions.pop() for user, versions in seen.items()}
    on_candidate = sum(version == "b" for version in by_user.values())
    assert within_binomial_bound(on_candidate, USERS, CANDIDATE_SHARE), on_candidate
    with httpx.Client(base_url=gateway.url) as rest:
        for user in list(by_user)[:20]:
            answer = rest.post(
                "/models/echo/predict", json={"inputs": [SETOSA]}, headers={"x-user-id": user}
            )
            assert answer.headers["x-rollwise-version"] == by_user[user], user

    # Raising the candidate's weight keeps every user who had it.
    route(ops, {"a": 40, "b": 60})
    for user, version in by_user.items():
        if version == "b":
            assert version_for(client, user) == "b", user


def test_shadows_see_grpc_calls_and_compare_their_answers(
    client: triton.InferenceServerClient, ops: httpx.Client
) -> None:
    route(ops, {"a": 100}, {"c": 100})

    def shadow() -> dict[str, Any]:
        versions = ops.get("/api/v1/models/echo").json()["versions"]
        return next(v for v in versions if v["name"] == "c")["shadow"] or {}

    for _ in range(20):
        assert version_for(client, None) == "a"
    # c answers 2 where a answers 0: every comparison disagrees.
    eventually(lambda: shadow().get("compared", 0) >= 20)
    assert shadow()["agreement"] == 0.0
    route(ops, {"a": 100})
