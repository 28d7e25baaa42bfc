"""Read every external gate of one controller tick at once, within a bounded time.

The controller runs in its own thread; :class:`GateReader` runs the queries on an
event loop of its own (a daemon thread, started at the first read), never on the
server's loop, all concurrently. :meth:`GateReader.read` returns when all have answered
or the longest timeout of them has passed, whichever comes first, so a dead provider
holds a tick up by at most its timeout and never stalls a request. Whatever has not
answered by then is a *problem* (inconclusive), never a pass.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from rollwise.analysis.external import Reading
from rollwise.analysis.gates import Gate
from rollwise.analysis.sources import (
    DEFAULT_WEB_TIMEOUT_S,
    MAX_TIMEOUT_S,
    GateContext,
    PrometheusSource,
    WebSource,
    prometheus_value,
    render,
    web_value,
)
from rollwise.providers.settings import ProvidersSection
from rollwise.rollout.readings import gate_context, gates_to_read
from rollwise.rollout.spec import RolloutSpec
from rollwise.rollout.status import RolloutStatus

log = logging.getLogger("rollwise.providers")

MAX_ANSWER_BYTES = 1024 * 1024
"""An answer longer than this is not read to its end (and not judged)."""
_GRACE_S = 0.5


@dataclass(frozen=True, slots=True)
class GateRequest:
    """One gate of one rollout to read, with what its templates are filled with."""

    key: int
    """Whose reading it is (the rollout's id)."""
    gate: Gate
    context: GateContext


class _Problem(Exception):
    """A fetch that came back without a figure; the message says why."""


def _bearer(env_name: str | None) -> dict[str, str]:
    if not env_name:
        return {}
    token = os.environ.get(env_name, "")
    if not token:
        raise _Problem(f"environment variable {env_name} (the bearer token) is not set")
    return {"Authorization": f"Bearer {token}"}


async def _json(response: httpx.Response, what: str) -> Any:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise _Problem(f"{what} answered more than {MAX_ANSWER_BYTES} bytes")
    try:
        return orjson.loads(bytes(body))
    except orjson.JSONDecodeError:
        text = bytes(body[:120]).decode("utf-8", "replace")
        raise _Problem(f"{what} answered {response.status_code} with no JSON: {text!r}") from None


class GateReader:
    """Fetches readings for external gates; one per controller."""

    def __init__(self, settings: ProvidersSection | None = None) -> None:
        self.settings = settings or ProvidersSection()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
        self._lock = threading.Lock()

    # the loop of its own -------------------------------------------------------------
    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=_run_until_stopped,
                    args=(loop,),
                    name="rollwise-gate-reader",
                    daemon=True,
                ).start()
                self._loop = loop
            return self._loop

    def close(self) -> None:
        """Stop the loop (and close the connections); reading again starts it anew."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return
        client, self._client = self._client, None
        if client is not None:
            done = asyncio.run_coroutine_threadsafe(client.aclose(), loop)
            try:
                done.result(timeout=2.0)
            except Exception:
                log.debug("closing the gate reader's connections failed", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)

    # reading -------------------------------------------------------------------------
    def timeout_of(self, gate: Gate) -> float:
        source = gate.source
        if isinstance(source, PrometheusSource):
            return source.timeout_s or self.settings.prometheus.timeout_s
        if isinstance(source, WebSource):
            return source.timeout_s
        return DEFAULT_WEB_TIMEOUT_S

    def read(self, requests: Sequence[GateRequest]) -> dict[int, dict[Gate, Reading]]:
        """Every request's reading, by key and gate; blocks at most the longest timeout."""
        out: dict[int, dict[Gate, Reading]] = {}
        if not requests:
            return out
        limit_s = max(self.timeout_of(r.gate) for r in requests) + _GRACE_S
        future = asyncio.run_coroutine_threadsafe(self._read_all(requests), self._running_loop())
        try:
            readings = future.result(timeout=limit_s)
        except Exception as error:  # a timeout of the whole, or a bug: never a pass
            future.cancel()
            why = "timed out" if isinstance(error, TimeoutError) else f"failed: {error!r}"
            readings = [Reading(problem=f"reading {why}")] * len(requests)
        for request, reading in zip(requests, readings, strict=True):
            out.setdefault(request.key, {})[request.gate] = reading
        return out

    async def _read_all(self, requests: Sequence[GateRequest]) -> list[Reading]:
        if self._client is None:
            # Each call's own timeout (wait_for) governs; httpx's default 5 s would cut
            # a longer one short.
            self._client = httpx.AsyncClient(follow_redirects=False, timeout=MAX_TIMEOUT_S)
        return list(await asyncio.gather(*(self._read_one(r) for r in requests)))

    async def _read_one(self, request: GateRequest) -> Reading:
        gate, context = request.gate, request.context
        timeout_s = self.timeout_of(gate)
        try:
            if isinstance(gate.source, WebSource):
                value = await self._bounded(self._web(gate.source, context), timeout_s)
                return Reading(candidate=value)
            if not isinstance(gate.source, PrometheusSource):
                return Reading(problem=f"{gate.metric.value} has no source to read")
            source = gate.source
            candidate = self._bounded(self._query(source, context, context.candidate), timeout_s)
            if not gate.bound.relative:
                return Reading(candidate=await candidate)
            stable = self._bounded(self._query(source, context, context.stable), timeout_s)
            both = await asyncio.gather(candidate, stable)
            return Reading(candidate=both[0], stable=both[1])
        except _Problem as problem:
            return Reading(problem=str(problem))

    @staticmethod
    async def _bounded(work: Awaitable[Any], timeout_s: float) -> Any:
        try:
            return await asyncio.wait_for(work, timeout_s)
        except TimeoutError:
            raise _Problem(f"no answer within {timeout_s:g} s") from None
        except httpx.HTTPError as error:
            raise _Problem(f"{type(error).__name__}: {error}") from None

    async def _query(self, source: PrometheusSource, context: GateContext, version: str) -> float:
        settings = self.settings.prometheus
        address = source.address or settings.url
        if address is None:
            raise _Problem("no Prometheus address (gate address or providers.prometheus.url)")
        query = render(source.query, context.values(version))
        # The config's headers and token are for the config's server only: a gate's own
        # address comes from a spec, and an operator must not have them sent elsewhere.
        own = settings.url is not None and address.rstrip("/") == settings.url.rstrip("/")
        headers = {**settings.headers, **_bearer(settings.bearer_token_env)} if own else {}
        assert self._client is not None
        async with self._client.stream(
            "GET", f"{address}/api/v1/query", params={"query": query}, headers=headers
        ) as response:
            # Prometheus answers errors (a bad query: 400, 422) as JSON with their reason.
            answer = await _json(response, f"Prometheus at {address}")
        value = prometheus_value(answer)
        if isinstance(value, str):
            raise _Problem(f"{version}: {value} (query {query})")
        return value

    async def _web(self, source: WebSource, context: GateContext) -> float | bool:
        url = render(source.url, context.values(context.candidate))
        headers = {**dict(source.headers), **_bearer(source.bearer_token_env)}
        body: Mapping[str, Any] | None = context.to_json() if source.method == "POST" else None
        assert self._client is not None
        async with self._client.stream(source.method, url, headers=headers, json=body) as response:
            if not 200 <= response.status_code < 300:
                raise _Problem(f"{url} answered {response.status_code}")
            answer = await _json(response, url)
        value = web_value(answer, source.json_path)
        if isinstance(value, str):
            raise _Problem(value)
        return value


def _run_until_stopped(loop: asyncio.AbstractEventLoop) -> None:
    """The reader's loop, closed once ``close`` stops it (its selector and sockets)."""
    try:
        loop.run_forever()
    finally:
        loop.close()


def requests_for(
    key: int, spec: RolloutSpec, status: RolloutStatus, now_s: float
) -> list[GateRequest]:
    """The external gates one rollout judges at this tick, as requests to read."""
    gates = gates_to_read(spec, status)
    if not gates:
        return []
    context = gate_context(spec, status, now_s)
    return [GateRequest(key, gate, context) for gate in gates]
