"""The gateway's side of the shadow host's socket, without a child: a batch of answers is
read a slice per turn of the loop, each sender is told once, and a child that sends
nothing past a call's deadline is aborted, its calls ended as timeouts.

The connection is given a transport and a process that only note what is done to them,
and the child's bytes are handed to it as the event loop would hand them."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any, cast

import pytest

from rollwise.backends import shadow_host
from rollwise.backends.base import InferenceRequest, InferenceResponse, Tensor
from rollwise.backends.shadow_host import DELIVER_SLICE, HostedModel, Outcome, TimedAnswer
from rollwise.backends.shadow_wire import _frame
from rollwise.errors import BackendError, BackendTimeout

REQUEST = InferenceRequest((Tensor("x", (1, 1), "FP64", [0.0]),))
ANSWER = InferenceResponse((Tensor("label", (1,), "INT64", [1]),))


def hosted(timeout_s: float = 1.0) -> HostedModel:
    return HostedModel(1, "python", "v2", {}, "/", "", timeout_s)


class NotedTransport:
    """Keeps what the connection writes; notes an abort."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True


class NotedProcess:
    def __init__(self) -> None:
        self.killed = False

    def kill(self) -> None:
        self.killed = True

    def poll(self) -> int | None:
        return -9 if self.killed else None


def connection() -> tuple[shadow_host._Connection, NotedTransport, NotedProcess]:
    process = NotedProcess()
    conn = shadow_host._Connection(cast(subprocess.Popen[bytes], process))
    transport = NotedTransport()
    conn.connection_made(cast(asyncio.Transport, transport))
    return conn, transport, process


Told = list[tuple[Any, Outcome]]


def teller(told: Told) -> shadow_host.Done:
    def done(context: Any, outcome: Outcome, elapsed_ms: float) -> None:
        assert elapsed_ms >= 0.0
        told.append((context, outcome))

    return done


def test_a_batch_of_answers_is_read_a_slice_per_turn_each_sender_told_once() -> None:
    calls = 3 * DELIVER_SLICE - 1
    told: Told = []
    seen: list[int] = []

    async def scenario() -> None:
        conn, transport, _ = connection()
        for number in range(calls):
            conn.send(hosted(), REQUEST, teller(told), number)
        await asyncio.sleep(0)
        assert len(transport.written) == 1  # the calls of one turn, in one write
        answers = [_frame(("ok", n, (ANSWER, 0.5))) for n in range(1, calls + 1)]
        conn.data_received(b"".join(answers) + _frame(("ok", 1, (ANSWER, 0.5))))
        assert told == []  # read in later turns, not while the bytes arrive
        for _ in range(5):
            await asyncio.sleep(0)
            seen.append(len(told))
        assert conn.pending == {}

    asyncio.run(scenario())
    assert seen == [DELIVER_SLICE, 2 * DELIVER_SLICE, calls, calls, calls]
    # The repeated answer to call 1 told nobody a second time.
    assert [context for context, _ in told] == list(range(calls))
    assert all(isinstance(outcome, TimedAnswer) and outcome.model_ms == 0.5 for _, outcome in told)


def test_an_error_from_the_child_reaches_its_sender_as_the_backends_error() -> None:
    told: Told = []

    async def scenario() -> None:
        conn, _, _ = connection()
        conn.send(hosted(), REQUEST, teller(told), "only")
        conn.data_received(_frame(("error", 1, ("timeout", "late", "v2", None))))
        await asyncio.sleep(0)

    asyncio.run(scenario())
    [(context, outcome)] = told
    assert context == "only"
    assert isinstance(outcome, BackendTimeout) and str(outcome) == "late"


def test_a_silent_child_is_aborted_at_the_deadline_and_its_calls_time_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shadow_host, "HOST_MARGIN_S", 0.0)
    told: Told = []

    async def scenario() -> tuple[NotedTransport, NotedProcess]:
        conn, transport, process = connection()
        conn.send(hosted(timeout_s=0.05), REQUEST, teller(told), "first")
        conn.send(hosted(timeout_s=5.0), REQUEST, teller(told), "second")
        await asyncio.sleep(0.2)
        assert [context for context, _ in told] == ["first"]
        # The loop reports the aborted connection lost: the rest fail then.
        conn.connection_lost(None)
        return transport, process

    transport, process = asyncio.run(scenario())
    assert transport.aborted and process.killed
    first, second = (outcome for _, outcome in told)
    assert isinstance(first, BackendTimeout) and "within 0.05 s" in str(first)
    assert type(second) is BackendError and "exited with code -9" in str(second)


def test_a_child_that_answers_other_calls_is_not_aborted_for_a_late_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shadow_host, "HOST_MARGIN_S", 0.0)
    told: Told = []

    async def scenario() -> NotedTransport:
        conn, transport, _ = connection()
        conn.send(hosted(timeout_s=0.05), REQUEST, teller(told), "late")
        conn.send(hosted(timeout_s=5.0), REQUEST, teller(told), "answered")
        await asyncio.sleep(0.01)
        conn.data_received(_frame(("ok", 2, (ANSWER, 1.0))))
        await asyncio.sleep(0.2)
        return transport

    transport = asyncio.run(scenario())
    assert not transport.aborted
    assert [context for context, _ in told] == ["answered", "late"]
    assert isinstance(told[1][1], BackendTimeout)


def test_abandoned_calls_are_told_they_were_given_up() -> None:
    told: Told = []

    async def scenario() -> None:
        conn, _, _ = connection()
        conn.send(hosted(), REQUEST, teller(told), "a")
        conn.give_up(lambda call: asyncio.CancelledError())
        # An answer that comes after is nobody's.
        conn.data_received(_frame(("ok", 1, (ANSWER, 1.0))))
        await asyncio.sleep(0)

    asyncio.run(scenario())
    [(context, outcome)] = told
    assert context == "a" and isinstance(outcome, asyncio.CancelledError)
