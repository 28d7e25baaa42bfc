"""The one exit-code table of the command line (rollwise.exits): every way a rollout
ends, every situation before it, and every error family, each case named in a sentence."""

from __future__ import annotations

from typing import Any

import pytest

from rollwise.client import ClientError, NotReady
from rollwise.errors import (
    BackendError,
    ConfigError,
    Conflict,
    Forbidden,
    NotFound,
    RollwiseError,
    StoreError,
    ValidationError,
)
from rollwise.exits import (
    EXIT_CODES,
    Result,
    exit_code,
    exit_code_of_error,
    result_of_error,
    result_of_rollout,
)

ROLLOUT_CASES = [
    ("promoted", "promoted", Result.PROMOTED, 0, "a promoted candidate succeeds"),
    ("validated", "validated", Result.VALIDATED, 0, "a validated shadow succeeds"),
    ("rolled_back", "rolled_back", Result.ROLLED_BACK, 3, "a gate's rollback exits 3"),
    ("rolled_back", "aborted", Result.ROLLED_BACK, 3, "a person's abort exits 3"),
    (
        "no_difference",
        "no_difference",
        Result.NO_DIFFERENCE,
        3,
        "an A/B test that found no difference keeps stable, says so, and exits 3",
    ),
    (
        "inconclusive",
        "inconclusive",
        Result.INCONCLUSIVE,
        3,
        "an A/B test that ended undecided keeps stable, says so, and exits 3",
    ),
    (
        "rolled_back",
        "no_difference",
        Result.NO_DIFFERENCE,
        3,
        "an A/B test without a difference, as older rollwise stored it, exits 3",
    ),
    ("failed", "failed", Result.FAILED, 4, "a candidate that cannot serve exits 4"),
    ("promoted", "", Result.PROMOTED, 0, "a status without an outcome falls back on the phase"),
    ("rolled_back", "", Result.ROLLED_BACK, 3, "a rollback without an outcome exits 3"),
    ("exploded", "", Result.ERROR, 1, "a phase this CLI does not know is no success"),
]


@pytest.mark.parametrize(
    ("phase", "outcome", "result", "code"),
    [pytest.param(*case[:4], id=case[4]) for case in ROLLOUT_CASES],
)
def test_an_ended_rollout_maps_to_its_result_and_code(
    phase: str, outcome: str, result: Result, code: int
) -> None:
    found = result_of_rollout({"phase": phase, "outcome": outcome})

    assert found is result
    assert exit_code(result) == code


@pytest.mark.parametrize("phase", ["pending", "progressing", "paused"])
def test_a_running_rollout_has_no_result_yet(phase: str) -> None:
    assert result_of_rollout({"phase": phase, "outcome": ""}) is None


@pytest.mark.parametrize(
    ("result", "code"),
    [
        pytest.param(Result.PROMOTED, 0, id="promoted is 0"),
        pytest.param(Result.VALIDATED, 0, id="validated is 0"),
        pytest.param(Result.ERROR, 1, id="any other error is 1"),
        pytest.param(Result.REFUSED, 2, id="refused input is 2, like a usage error"),
        pytest.param(Result.ROLLED_BACK, 3, id="rolled back is 3"),
        pytest.param(Result.NO_DIFFERENCE, 3, id="no difference keeps stable: 3"),
        pytest.param(Result.INCONCLUSIVE, 3, id="inconclusive keeps stable: 3"),
        pytest.param(Result.FAILED, 4, id="failed is 4"),
        pytest.param(Result.NOT_READY, 4, id="not ready on the fleet is 4"),
        pytest.param(Result.TIMEOUT, 4, id="timed out is 4"),
    ],
)
def test_every_result_has_one_code(result: Result, code: int) -> None:
    assert exit_code(result) == code


def test_the_table_covers_every_result() -> None:
    assert set(EXIT_CODES) == set(Result)


def _not_ready(**extra: Any) -> NotReady:
    return NotReady("iris v4 failed to load", version={"name": "v4"}, **extra)


@pytest.mark.parametrize(
    ("error", "result"),
    [
        pytest.param(ClientError("bad spec", status=422), Result.REFUSED, id="a 422 is refused"),
        pytest.param(ClientError("no model", status=404), Result.REFUSED, id="a 404 is refused"),
        pytest.param(ClientError("exists", status=409), Result.REFUSED, id="a 409 is refused"),
        pytest.param(ClientError("policy", status=403), Result.REFUSED, id="a 403 is refused"),
        pytest.param(ClientError("no token", status=401), Result.REFUSED, id="a 401 is refused"),
        pytest.param(ClientError("boom", status=500), Result.ERROR, id="a 500 is an error"),
        pytest.param(ClientError("busy", status=503), Result.ERROR, id="a 503 is an error"),
        pytest.param(
            ClientError("cannot reach rollwise"), Result.ERROR, id="an unreachable gateway"
        ),
        pytest.param(ConfigError("x.yaml: bad"), Result.REFUSED, id="a bad file is refused"),
        pytest.param(ValidationError("bad"), Result.REFUSED, id="bad input is refused"),
        pytest.param(NotFound("none"), Result.REFUSED, id="not found is refused"),
        pytest.param(Conflict("busy"), Result.REFUSED, id="a conflict is refused"),
        pytest.param(Forbidden("role"), Result.REFUSED, id="forbidden is refused"),
        pytest.param(_not_ready(), Result.NOT_READY, id="a failed load is not ready"),
        pytest.param(_not_ready(timed_out=True), Result.NOT_READY, id="a ready timeout"),
        pytest.param(BackendError("x"), Result.ERROR, id="a backend error is an error"),
        pytest.param(StoreError("x"), Result.ERROR, id="a store error is an error"),
        pytest.param(RollwiseError("x"), Result.ERROR, id="any other error"),
        pytest.param(ValueError("x"), Result.ERROR, id="not even a rollwise error"),
    ],
)
def test_an_error_maps_to_its_result(error: BaseException, result: Result) -> None:
    assert result_of_error(error) is result
    assert exit_code_of_error(error) == exit_code(result)


def test_an_error_naming_an_unknown_result_falls_back_on_its_family() -> None:
    error = ConfigError("bad")
    error.result = "exploded"  # type: ignore[attr-defined]

    assert result_of_error(error) is Result.REFUSED
