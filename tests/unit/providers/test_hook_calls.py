"""One hook call without a network: retries with backoff, what counts as success, and
credentials from the environment (the HTTP itself is tested against a real receiver in
tests/integration/controller/test_controller_hooks.py)."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
import pytest

from rollwise.providers.hooks import call_hook
from rollwise.rollout.hooks import Header, HookCall

URL = "http://hooks.test/run"


class Script:
    """A hook that gives the scripted answers in turn (a status, or an error to raise)."""

    def __init__(self, *answers: int | Exception) -> None:
        self.answers = list(answers)
        self.headers: list[Mapping[str, str]] = []

    def __call__(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float
    ) -> tuple[int, str]:
        self.headers.append(headers)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer, f"answer {answer}"


@pytest.mark.parametrize(
    ("answers", "retries", "ok", "attempts", "slept"),
    [
        pytest.param((200,), 2, True, 1, [], id="a 2xx at once needs one call"),
        pytest.param((500, 502, 200), 2, True, 3, [0.5, 1.0], id="retried with doubling backoff"),
        pytest.param((500, 500, 500), 2, False, 3, [0.5, 1.0], id="fails after its retries"),
        pytest.param((404,), 0, False, 1, [], id="no retries: one call"),
        pytest.param(
            (httpx.ConnectError("refused"), 201),
            1,
            True,
            2,
            [0.5],
            id="a refused connection is retried",
        ),
    ],
)
def test_retries_with_backoff(
    answers: tuple[int | Exception, ...], retries: int, ok: bool, attempts: int, slept: list[float]
) -> None:
    waits: list[float] = []

    result = call_hook(HookCall(URL, 1.0, retries), {"a": 1}, Script(*answers), sleep=waits.append)

    assert (result[0], result[4]) == (ok, attempts)
    assert waits == slept


def test_a_timeout_says_how_long_it_waited() -> None:
    result = call_hook(
        HookCall(URL, 2.5, 0), {}, Script(httpx.ReadTimeout("slow")), sleep=lambda _s: None
    )

    assert result[:3] == (False, None, "timed out after 2.5 s")


def test_a_credential_comes_from_the_environment_at_call_time() -> None:
    hook = Script(200)
    call = HookCall(URL, headers=(Header("Authorization", env="HOOK_TOKEN"),))

    call_hook(call, {}, hook, env={"HOOK_TOKEN": "Bearer s3cret"})

    assert hook.headers[0]["Authorization"] == "Bearer s3cret"
    assert hook.headers[0]["content-type"] == "application/json"


def test_an_unset_variable_fails_the_call_without_sending_it() -> None:
    hook = Script(200)
    call = HookCall(URL, headers=(Header("Authorization", env="HOOK_TOKEN"),))

    ok, status, error, *_ = call_hook(call, {}, hook, env={})

    assert (ok, status) == (False, None)
    assert error == "header Authorization: environment variable HOOK_TOKEN is not set"
    assert not hook.headers
