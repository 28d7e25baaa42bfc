"""The request path of one replica: choose a version, ask it, record what it did, and
copy the request to the shadows due for it.

Nothing here reads the store or waits on anything but the chosen backend: the tables
and models are immutable values read without locks, and recording adds to in-memory
windows that telemetry flushes. A copy for the shadows is only queued here; calling
them and recording their answers happen off the request path (``runtime.shadows``).

A version that refuses a request as bad input (``ValidationError``, of which
``RequestRejected``) has done nothing wrong: the refusal goes back to the caller as it
is and is recorded as a client error of that version in its role, never as an error.

A request passed through to a ``rest`` version is sent and answered by the server, which
streams it both ways; ``exchanged`` records what came of it by the same rules (a 4xx
answer is the caller's, a 5xx or a timeout the version's).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass

from rollwise.backends.base import InferenceRequest, InferenceResponse
from rollwise.backends.exchange import ProxyRequest, Verdict, judge
from rollwise.backends.llm_request import LlmRequest
from rollwise.domain import BUCKETS, Role, VersionHealth
from rollwise.errors import BackendError, BackendTimeout, BackendUnavailable, ValidationError
from rollwise.metrics.llm import record_llm
from rollwise.metrics.recorder import VersionWindow
from rollwise.routing import ModelTable, known_version
from rollwise.runtime.context import Context
from rollwise.runtime.routing_state import USERS_TRACKED, RoutingState
from rollwise.runtime.shadows import Shadows
from rollwise.runtime.telemetry import Telemetry
from rollwise.runtime.versions import Versions, describe
from rollwise.tracing import RequestTracer


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the served version answered, for the reply and for the mirrors."""

    version: str
    response: InferenceResponse


class Serving:
    """Answers predictions with the versions loaded here, by the current tables."""

    def __init__(
        self, ctx: Context, versions: Versions, routing: RoutingState, telemetry: Telemetry
    ) -> None:
        self.ctx = ctx
        self.versions = versions
        self.routing = routing
        self.telemetry = telemetry
        self.shadows = Shadows(ctx, versions, telemetry)
        self.tracer: RequestTracer | None = ctx.tracer

    def choose(self, model: str, key: str | None, forced: str | None) -> tuple[ModelTable, str]:
        table = self.routing.tables.get(model)
        if table is None:
            self.ctx.model(model)
            raise BackendUnavailable(f"model {model!r} is not loaded yet")
        if forced is not None:
            known_version(self.ctx.models[model], forced)
            state = self.versions.state(model, forced)
            if state.health is not VersionHealth.READY:
                raise BackendUnavailable(
                    f"version {forced!r} of model {model!r} is {describe(state)}",
                    version=forced,
                )
            return table, forced
        if not table.serving:
            detail = "; ".join(
                f"{v}: {self.versions.state(model, v).health.value}"
                for v in self.ctx.models[model].versions
            )
            raise BackendUnavailable(f"model {model!r} has no ready version ({detail})")
        # random() and a product: randrange costs several Python calls per request.
        random_bucket = int(self.ctx.rng.random() * BUCKETS)
        version = table.choose(key, random_bucket)
        if table.fallbacks:
            meant = table.fallback_for(key, random_bucket)
            if meant is not None:
                # Routing gave this request to a version not ready here: the anchor
                # answers it, and it is counted apart, never as a user of the split.
                fallbacks = self.telemetry.fallbacks
                fallbacks[(model, meant)] = fallbacks.get((model, meant), 0) + 1
                return table, version
        if key is not None:
            seen = self.routing.users_seen.get(model)
            # A user is remembered by a fixed-size hash of the key, never the key itself,
            # so long keys cost no memory; a collision (odds about 3 in 10^8 at a million
            # users) would only leave one user uncounted.
            user = hash(key)
            if seen is not None and user not in seen and len(seen) < USERS_TRACKED:
                seen.add(user)
                self.telemetry.metrics.window(model, version, Role.SERVED).users += 1
        return table, version

    def serve(
        self,
        table: ModelTable,
        version: str,
        request: InferenceRequest,
        request_id: str,
        role: Role = Role.SERVED,
        parent: str | None = None,
    ) -> Awaitable[Outcome]:
        """Ask ``version`` for an answer, recording what happened under ``role``
        (served traffic, or a preview that forced the version); traced, in a span that
        continues the caller's ``traceparent`` (``parent``). Not a coroutine itself:
        an untraced request awaits the work directly, with no frame in between."""
        tracer = self.tracer
        if tracer is None:
            return self._serve(table, version, request, request_id, role)
        return tracer.traced(
            self._serve(table, version, request, request_id, role),
            model=table.model,
            version=version,
            role=role.value,
            request_id=request_id,
            parent=parent,
        )

    async def _serve(
        self,
        table: ModelTable,
        version: str,
        request: InferenceRequest,
        request_id: str,
        role: Role,
    ) -> Outcome:
        model = table.model
        backend = self.versions.backends[(model, version)]
        started = time.perf_counter()
        try:
            response = await backend.predict(request)
        except ValidationError:
            self.telemetry.metrics.window(model, version, role).record_refusal()
            raise
        except BackendTimeout as error:
            self._record_call(model, version, role, started, error)
            raise BackendTimeout(
                f"version {version!r} of model {model!r} did not answer in time: {error}",
                version=version,
            ) from None
        except Exception as error:
            self._record_call(model, version, role, started, error)
            raise BackendError(
                f"version {version!r} of model {model!r} failed: {error}", version=version
            ) from None
        window = self._record_call(model, version, role, started, None)
        self._record_answer(window, model, version, role, request_id, response)
        return Outcome(version, response)

    def _record_call(
        self, model: str, version: str, role: Role, started: float, error: Exception | None
    ) -> VersionWindow:
        latency_ms = (time.perf_counter() - started) * 1000.0
        # Looked up after the call: the window may have been swapped out meanwhile.
        window = self.telemetry.metrics.window(model, version, role)
        window.record_call(
            latency_ms, failed=error is not None, timed_out=isinstance(error, BackendTimeout)
        )
        return window

    def _record_answer(
        self,
        window: VersionWindow,
        model: str,
        version: str,
        role: Role,
        request_id: str,
        response: InferenceResponse,
    ) -> None:
        outputs = response.primary()
        usage = response.parameters.get("llm")
        if usage is not None:
            # An LLM's answer is text, not a class to count: its measures instead.
            record_llm(window, usage)
        else:
            window.record_outputs(outputs, self.ctx.models[model].task == "classification")
        self.telemetry.predictions.log(request_id, model, version, role, outputs, self.ctx.clock())

    def exchanged(
        self,
        table: ModelTable,
        version: str,
        role: Role,
        request_id: str,
        latency_ms: float,
        status: int,
        error: Exception | None,
        response: InferenceResponse | None,
    ) -> Outcome | None:
        """Record a request passed through to ``version``: answered with ``status``
        (0 when no answer came) after ``latency_ms`` until its head, or cut short by
        ``error``; ``response`` is the prediction read out of the answer. Returns the
        outcome to compare the shadows' answers with when the version answered."""
        model = table.model
        window = self.telemetry.metrics.window(model, version, role)
        if isinstance(error, ValidationError):
            # The caller's body was refused or never came whole: its mistake.
            window.record_refusal()
            return None
        if error is None:
            verdict = judge(status)
            if verdict is Verdict.REFUSED:
                window.record_refusal()
                return None
            if verdict is Verdict.ANSWERED:
                window.record_call(latency_ms, failed=False, timed_out=False)
                answer = response if response is not None else InferenceResponse(outputs=())
                self._record_answer(window, model, version, role, request_id, answer)
                return Outcome(version, answer)
        window.record_call(latency_ms, failed=True, timed_out=isinstance(error, BackendTimeout))
        return None

    def mirror(
        self,
        table: ModelTable,
        request: InferenceRequest | ProxyRequest | LlmRequest,
        request_id: str,
        served: Outcome | None,
    ) -> None:
        """Queue the request for the shadow versions due for it, without waiting for them."""
        self.shadows.offer(table, request, request_id, served.response if served else None)

    async def drain_mirrors(self, timeout_s: float) -> None:
        await self.shadows.drain(timeout_s)
