"""Mirrored requests: copied to the shadow versions due for them, run at low priority,
and recorded off the request path.

The request path only appends a job to its shadow's queue (``Shadows.offer``): no task,
no await, no model code, no recording. The queued calls start together, up to
``START_EVERY_S`` later (at once when ``START_BATCH`` are waiting), and the answers that
come back are recorded a few at a time in later turns of the loop: metrics, the
comparison with the served answer and the prediction log all happen there, never
between a request's arrival and its reply, and never as one long stretch that a new
request would wait behind. Starting calls in batches is what keeps a mirror cheap for
the event loop: at a few hundred requests a second the loop is otherwise asleep between
requests, and each mirrored call started, and each answer read, on its own would wake it
once more (a wake-up costs it more CPU than the call's own work); batched, a handful of
calls share one wake-up to start and, from the shadow host, one to come back.
In-process shadow versions (sklearn, onnx, python) run in the shadow host, a child
process, when ``server.shadow_process`` is on
(``rollwise.backends.shadow_host``): their model code then never holds the interpreter
that serves requests, and a call there is no task of the gateway's, only a message out
and one back, whose answer is recorded as it is read. Otherwise, for the other kinds,
and while the host starts or loads the model, shadow calls run in the shadows' own
thread pool, which gives way to served calls (``rollwise.backends.executor``).

Each shadow holds at most ``mirror_concurrency`` mirrored requests at once, queued,
running or waiting to be recorded; beyond, a mirrored request is dropped and counted in
its shadow window's ``dropped``, so that a slow shadow sheds its own load instead of
delaying replies or crowding out the other shadows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rollwise.backends.base import Backend, InferenceRequest, InferenceResponse
from rollwise.backends.exchange import ProxyRequest
from rollwise.backends.executor import enter_shadow_lane
from rollwise.backends.inprocess import InProcessBackend
from rollwise.backends.llm_request import LlmRequest
from rollwise.backends.shadow_host import (
    HostedModel,
    Outcome,
    ShadowHost,
    TimedAnswer,
    hostable,
    hosted_model,
    shadow_process_enabled,
)
from rollwise.domain import Role
from rollwise.errors import BackendTimeout, ValidationError
from rollwise.metrics.llm import record_llm
from rollwise.metrics.scoring import compare_outputs
from rollwise.routing import ModelTable
from rollwise.runtime.context import Context
from rollwise.runtime.telemetry import Telemetry
from rollwise.runtime.text_comparer import TextComparer, request_text, text_rows
from rollwise.runtime.versions import Versions

START_EVERY_S = 0.02
"""How long a mirrored request waits at most for its shadow call to start, so that the
calls of several requests start in one turn of the loop (and go to the shadow host in
one write). A shadow's latency is timed from the start of its call, so the wait is not
counted in it."""
START_BATCH = 16
"""Mirrored calls waiting that start at once, whatever ``START_EVERY_S`` says (a quarter
of ``mirror_concurrency`` when that is fewer): at high rates a batch is full long before
the timer, and a shadow must not reach its ``mirror_concurrency`` with requests that
merely wait to start."""

RECORD_SLICE = 4
"""Answers recorded in one turn of the loop: a few tens of µs each, so that a request
arriving meanwhile waits for a slice, never for a whole backlog."""

HOST_WAIT_S = 10.0
"""How long a shadow's calls run in the gateway while the shadow host loads its model (or
starts again). The host runs at the lowest priority, so on a machine kept busy it may
not load the model at all; its calls are then dropped (and counted) instead of running
beside the served requests for as long as the machine stays busy."""

log = logging.getLogger("rollwise.shadows")

SWEEP_S = 5.0
"""How often the models the shadow host holds are checked against the loaded versions,
so that one unloaded here is unloaded there too (at the next mirrored request)."""

ShadowKey = tuple[str, str]
"""(model, version) of a shadow."""
_Predict = Callable[[Any], Awaitable[InferenceResponse | TimedAnswer]]
"""A shadow's call: its answer, or, from the shadow host, its answer and the model's own
time there (which is then its latency). It takes the job's request: an inference
request, or a ``ProxyRequest`` for a ``rest`` version (whose ``predict`` takes both)."""


@dataclass(slots=True)
class ShadowJob:
    """One mirrored request for one shadow, and the served answer to compare with."""

    model: str
    version: str
    request: InferenceRequest | ProxyRequest | LlmRequest
    request_id: str
    served: InferenceResponse | None
    """None when the served version failed or refused: nothing to compare with."""


@dataclass(slots=True)
class ShadowAnswer:
    """What the shadow did with a job: its answer or its error, timed."""

    job: ShadowJob
    latency_ms: float
    at_s: float
    response: InferenceResponse | None
    error: Exception | None


class Shadows:
    """The shadow versions' queues, their runner, and the recording of their answers."""

    def __init__(self, ctx: Context, versions: Versions, telemetry: Telemetry) -> None:
        self.ctx = ctx
        self.versions = versions
        self.telemetry = telemetry
        self.limit = ctx.config.server.mirror_concurrency
        """Mirrored requests one shadow holds at most: queued, running or unrecorded."""
        self.start_batch = max(1, min(START_BATCH, self.limit // 4))
        """Calls waiting that start at once (``START_BATCH``)."""
        self._queued: deque[ShadowJob] = deque()
        self._answers: deque[ShadowAnswer] = deque()
        self._held: dict[ShadowKey, int] = {}
        self._held_total = 0
        self._emptied: asyncio.Event | None = None
        """Set when the shadows hold nothing any more, while ``drain`` waits for it."""
        self._calls: set[asyncio.Task[None]] = set()
        self._start_due = False
        """A start of the queued calls is due in this turn of the loop (a batch is full)."""
        self._start_timer: asyncio.TimerHandle | None = None
        """The start of the queued calls due within ``START_EVERY_S``."""
        self._record_due = False
        self.host: ShadowHost | None = (
            ShadowHost() if shadow_process_enabled(ctx.config.server.shadow_process) else None
        )
        """Runs in-process shadows' model code in a child process; None when off."""
        self._hosted: dict[ShadowKey, tuple[Backend, HostedModel]] = {}
        """Per shadow, the backend last sent to the host, and how it is called there."""
        self._host_had_s: dict[ShadowKey, float] = {}
        """Per hosted shadow, when the host last had its model (or was first asked to)."""
        self._host_late: set[ShadowKey] = set()
        """Hosted shadows whose calls are dropped: the host has not had their model for
        ``HOST_WAIT_S``."""
        self._swept_s = 0.0
        self.monotonic: Callable[[], float] = time.monotonic
        """The clock of ``HOST_WAIT_S`` (tests put a fake one here)."""
        self.texts = TextComparer(ctx.config.comparators, telemetry.metrics, ctx.later)
        """Text answers' comparators (``runtime.text_comparer``), for models with one."""

    @property
    def held(self) -> int:
        """Mirrored requests queued, running or waiting to be recorded, all shadows."""
        return self._held_total

    # the request path -----------------------------------------------------------------
    def offer(
        self,
        table: ModelTable,
        request: InferenceRequest | ProxyRequest | LlmRequest,
        request_id: str,
        served: InferenceResponse | None,
    ) -> None:
        """Queue the request for the shadows due for it; never waits, never raises."""
        rng = self.ctx.rng
        queued = False
        for version, percent in table.mirrors:
            if percent < 100 and rng.random() * 100.0 >= percent:
                continue
            key = (table.model, version)
            held = self._held.get(key, 0)
            if held >= self.limit:
                self._drop(key)
                continue
            self._held[key] = held + 1
            self._held_total += 1
            self._queued.append(ShadowJob(table.model, version, request, request_id, served))
            queued = True
        if not queued:
            return
        if len(self._queued) >= self.start_batch:
            if self._start_timer is not None:
                self._start_timer.cancel()
                self._start_timer = None
            if not self._start_due:
                self._start_due = True
                asyncio.get_running_loop().call_soon(self._start_queued)
        elif self._start_timer is None and not self._start_due:
            self._start_timer = asyncio.get_running_loop().call_later(
                START_EVERY_S, self._start_queued
            )

    # calls and answers ------------------------------------------------------------------
    def _start_queued(self) -> None:
        self._start_due = False
        if self._start_timer is not None:
            self._start_timer.cancel()
            self._start_timer = None
        loop = asyncio.get_running_loop()
        while self._queued:
            job = self._queued.popleft()
            backend = self.versions.backends.get((job.model, job.version))
            if backend is None:
                # Unloaded between the mirror decision and now.
                self._release((job.model, job.version))
                self._drop((job.model, job.version))
                continue
            route: _Predict | HostedModel | None = backend.predict
            if (
                self.host is not None
                and hostable(backend)
                and isinstance(job.request, InferenceRequest)
            ):
                route = self._hosted_route((job.model, job.version), backend)
            if route is None:
                self._release((job.model, job.version))
                self._drop((job.model, job.version))
                continue
            if isinstance(route, HostedModel):
                self._send_hosted(job, route)
                continue
            task = loop.create_task(self._call(job, route))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    def _hosted_route(self, key: ShadowKey, backend: Backend) -> HostedModel | _Predict | None:
        """Where a call to ``backend`` goes: the shadow host's model of it when the host
        has it loaded; a backend new for its version (reloaded, replaced) is a new model
        there and the old one is unloaded.
        Until the host has the model loaded, the call runs here as without a host, so
        that the seconds a start or a load takes there drop no mirrored request; for
        at most ``HOST_WAIT_S`` at a time, after which None: drop the call. A model the
        host could not load runs here for good."""
        host = self.host
        assert host is not None and isinstance(backend, InProcessBackend)
        now = self.monotonic()
        hosted = self._hosted.get(key)
        if hosted is None or hosted[0] is not backend:
            if hosted is not None:
                host.forget(hosted[1])
            hosted = (backend, hosted_model(backend))
            self._hosted[key] = hosted
            self._host_had_s[key] = now
        if now - self._swept_s > SWEEP_S:
            self._swept_s = now
            self._sweep_hosted()
        if host.prepare(hosted[1]):
            self._host_had_s[key] = now
            if key in self._host_late:
                self._host_late.discard(key)
                log.info(
                    "shadow %s of model %s: the shadow host has its model again", key[1], key[0]
                )
            return hosted[1]
        if host.refused(hosted[1]) or now - self._host_had_s.get(key, now) <= HOST_WAIT_S:
            # Refused: the host will not load it later either, so it runs here for good.
            return backend.predict
        if key not in self._host_late:
            self._host_late.add(key)
            log.warning(
                "shadow %s of model %s: the shadow host has not had its model for %g s (it "
                "runs at the lowest priority, and the machine is busy); its mirrored "
                "requests are dropped, not run beside the served ones, until it has",
                key[1],
                key[0],
                HOST_WAIT_S,
            )
        return None

    def _sweep_hosted(self) -> None:
        """Unload in the host the models of versions no longer loaded here."""
        assert self.host is not None
        loaded = self.versions.backends
        for key, (backend, model) in list(self._hosted.items()):
            if loaded.get(key) is not backend:
                del self._hosted[key]
                self._host_had_s.pop(key, None)
                self._host_late.discard(key)
                self.host.forget(model)

    def _send_hosted(self, job: ShadowJob, model: HostedModel) -> None:
        """A call to the shadow host: no task of its own, its answer recorded as the
        host's connection reads it (``_hosted_answer``)."""
        assert self.host is not None and isinstance(job.request, InferenceRequest)
        try:
            self.host.send(model, job.request, self._hosted_answer, job)
        except Exception as error:  # the request could not be sent: the shadow's failure
            self._hosted_answer(job, error, 0.0)

    def _hosted_answer(self, job: ShadowJob, outcome: Outcome, elapsed_ms: float) -> None:
        if isinstance(outcome, TimedAnswer):
            answer = ShadowAnswer(job, outcome.model_ms, self.ctx.clock(), outcome.response, None)
        elif isinstance(outcome, Exception):
            answer = ShadowAnswer(job, elapsed_ms, self.ctx.clock(), None, outcome)
        else:  # given up by a stopping replica: dropped, as a cancelled call is
            self._release((job.model, job.version))
            self._drop((job.model, job.version))
            return
        self._record(answer)

    async def _call(self, job: ShadowJob, predict: _Predict) -> None:
        enter_shadow_lane()
        started = time.perf_counter()
        response: InferenceResponse | None = None
        model_ms: float | None = None
        error: Exception | None = None
        try:
            tracer = self.ctx.tracer
            if tracer is None:
                answer = await predict(job.request)
            else:
                answer = await tracer.traced(
                    predict(job.request),
                    model=job.model,
                    version=job.version,
                    role=Role.SHADOW.value,
                    request_id=job.request_id,
                    parent=None,
                )
            if isinstance(answer, TimedAnswer):
                response, model_ms = answer.response, answer.model_ms
            else:
                response = answer
        except asyncio.CancelledError:
            # Only a stopping replica cancels shadow calls: the request was dropped.
            self._release((job.model, job.version))
            self._drop((job.model, job.version))
            raise
        except Exception as failure:
            error = failure
        latency_ms = (time.perf_counter() - started) * 1000.0 if model_ms is None else model_ms
        self._answers.append(ShadowAnswer(job, latency_ms, self.ctx.clock(), response, error))
        if not self._record_due:
            self._record_due = True
            asyncio.get_running_loop().call_soon(self._record_some)

    def _record_some(self) -> None:
        """Record a slice of the answers; the rest in a later turn of the loop."""
        answers = self._answers
        for _ in range(min(RECORD_SLICE, len(answers))):
            self._record(answers.popleft())
        if answers:
            asyncio.get_running_loop().call_soon(self._record_some)
        else:
            self._record_due = False

    # recording ------------------------------------------------------------------------
    def _record(self, answer: ShadowAnswer) -> None:
        job = answer.job
        key = (job.model, job.version)
        self._release(key)
        # Looked up now: the window may have been swapped out since the call began.
        window = self.telemetry.metrics.window(job.model, job.version, Role.SHADOW)
        error = answer.error
        if isinstance(error, ValidationError):
            window.record_refusal()
            return
        window.record_call(
            answer.latency_ms,
            failed=error is not None,
            timed_out=isinstance(error, BackendTimeout),
        )
        if answer.response is None:
            return
        model = self.ctx.models.get(job.model)
        if model is None:  # the model left the catalog meanwhile
            return
        outputs = answer.response.primary()
        usage = answer.response.parameters.get("llm")
        if usage is not None:
            # An LLM's answer is text, not a class to count: its measures instead.
            record_llm(window, usage)
        else:
            window.record_outputs(outputs, model.task == "classification")
        self.telemetry.predictions.log(
            job.request_id, job.model, job.version, Role.SHADOW, outputs, answer.at_s
        )
        if job.served is not None:
            if self._compare_texts(job, outputs):
                return
            compared, agreed = compare_outputs(
                job.served.primary(), outputs, model.agreement_tolerance
            )
            window.compared += compared
            window.agreed += agreed

    def _compare_texts(self, job: ShadowJob, outputs: Any) -> bool:
        """Hand text answers to the model's comparator; False when it has none or the
        answers are not text (compared as outputs then)."""
        texts = self.texts
        if job.served is None or not texts.has(job.model):
            return False
        stable, candidate = text_rows(job.served.primary()), text_rows(outputs)
        if stable is None or candidate is None or len(stable) != len(candidate):
            return False
        for row, (a, b) in enumerate(zip(stable, candidate, strict=True)):
            texts.compare_texts(
                job.model, job.version, a, b, request_text=request_text(job.request, row)
            )
        return True

    def _drop(self, key: ShadowKey) -> None:
        self.telemetry.metrics.window(key[0], key[1], Role.SHADOW).dropped += 1

    def _release(self, key: ShadowKey) -> None:
        self._held[key] -= 1
        self._held_total -= 1
        if self._held_total == 0 and self._emptied is not None:
            self._emptied.set()

    # stopping -------------------------------------------------------------------------
    async def drain(self, timeout_s: float) -> None:
        """Let the shadows finish what they hold, for up to ``timeout_s``; then record
        the answers that came back and drop (and count) the rest."""
        if self._queued and timeout_s > 0:
            self._start_queued()  # now, not when the batch's timer says
        if self._held_total and timeout_s > 0:
            self._emptied = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), timeout_s)
            self._emptied = None
        while self._answers:
            self._record(self._answers.popleft())
        if self._start_timer is not None:
            self._start_timer.cancel()
            self._start_timer = None
        while self._queued:
            job = self._queued.popleft()
            self._release((job.model, job.version))
            self._drop((job.model, job.version))
        for task in list(self._calls):
            task.cancel()
        if self.host is not None:
            self.host.abandon()
            # Only a stopping replica drains: its shadow host stops with it (the next
            # mirrored request, if any, starts a new one).
            self._hosted.clear()
            self._host_had_s.clear()
            self._host_late.clear()
            await self.host.close()
        await self.texts.close()
