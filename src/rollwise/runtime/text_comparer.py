"""Comparing a candidate's text answers with the stable version's, off the request path.

The hook is :meth:`TextComparer.compare_texts`: the shadows call it for a mirrored
request whose answers are text, and the ``openai`` routes may call it with the two
answers' texts. ``exact`` and ``similarity`` are pure and take microseconds: they are
counted at once. ``embedding`` and ``judge`` call an OpenAI-compatible endpoint: the
pair is queued per model (at most ``queue``, ``concurrency`` calls at once) and counted
when the answer comes back; a pair beyond the bound, or whose call fails or times out,
is dropped and counted in ``compare_dropped``. Nothing here ever waits on the request
path, and a dead endpoint costs a request nothing.

Results go to the candidate's window in the role it answered in (the shadow's, for a
mirror): ``compared``/``agreed`` (``shadow_agreement``) for the first three, and
``judged``/``wins``/``ties`` (``win_rate``) for the judge.
"""

from __future__ import annotations

import logging
import os
import random
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from rollwise.analysis.comparators import ComparatorKind, ComparatorSpec
from rollwise.analysis.text_compare import (
    Preference,
    cosine,
    exact_match,
    judge_messages,
    judge_order,
    read_verdict,
    similarity,
)
from rollwise.domain import Role
from rollwise.metrics.recorder import MetricsRecorder

log = logging.getLogger("rollwise.comparator")

MAX_TEXT_CHARS = 32_000
"""Longest answer (and request) text sent to a comparator endpoint; the rest is cut, so
one huge answer cannot make a call unbounded."""


@dataclass(slots=True)
class TextPair:
    """Two answers to one request, waiting for an endpoint to compare them."""

    model: str
    version: str
    role: Role
    request_text: str
    stable_text: str
    candidate_text: str


class _Lane:
    """One model's queue of pairs and its calls in flight."""

    def __init__(self, spec: ComparatorSpec) -> None:
        self.spec = spec
        self.queue: deque[TextPair] = deque()
        self.running = 0
        """Workers started (each takes pairs off the queue until it is empty)."""
        self.calling = 0
        """Pairs taken off the queue whose call is not done yet."""
        self.client: httpx.AsyncClient | None = None
        self.failing = False
        """Said once in the log until a call succeeds again."""


class TextComparer:
    """Every model's comparator, and the bounded lanes of those that call endpoints."""

    def __init__(
        self,
        specs: Mapping[str, ComparatorSpec],
        metrics: MetricsRecorder,
        later: Callable[[Coroutine[Any, Any, None]], None],
        draw: Callable[[], float] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.specs = dict(specs)
        self.metrics = metrics
        self._later = later
        self._draw = draw if draw is not None else random.Random().random
        self._environ = os.environ if environ is None else environ
        self._lanes: dict[str, _Lane] = {}

    def has(self, model: str) -> bool:
        return model in self.specs

    def held(self, model: str) -> int:
        """Pairs of ``model`` queued or being compared by its endpoint."""
        lane = self._lanes.get(model)
        return 0 if lane is None else len(lane.queue) + lane.calling

    def compare_texts(
        self,
        model: str,
        version: str,
        stable_text: str,
        candidate_text: str,
        *,
        request_text: str = "",
        role: Role = Role.SHADOW,
    ) -> bool:
        """Compare ``version``'s answer with the stable one, now or in the background.

        True when compared or scheduled; False when the model has no comparator, or
        when the pair was dropped for want of room (then counted in ``compare_dropped``).
        """
        spec = self.specs.get(model)
        if spec is None:
            return False
        if spec.kind is ComparatorKind.EXACT or spec.kind is ComparatorKind.SIMILARITY:
            if spec.kind is ComparatorKind.EXACT:
                agreed = exact_match(stable_text, candidate_text, spec.normalisation)
            else:
                score = similarity(stable_text, candidate_text, spec.normalisation)
                agreed = score >= spec.threshold
            window = self.metrics.window(model, version, role)
            window.compared += 1
            window.agreed += agreed
            return True
        lane = self._lanes.get(model)
        if lane is None:
            lane = self._lanes[model] = _Lane(spec)
        if len(lane.queue) >= spec.queue:
            self.metrics.window(model, version, role).compare_dropped += 1
            return False
        lane.queue.append(
            TextPair(
                model,
                version,
                role,
                request_text[:MAX_TEXT_CHARS],
                stable_text[:MAX_TEXT_CHARS],
                candidate_text[:MAX_TEXT_CHARS],
            )
        )
        if lane.running < spec.concurrency:
            lane.running += 1
            self._later(self._work(lane))
        return True

    async def _work(self, lane: _Lane) -> None:
        try:
            while lane.queue:
                pair = lane.queue.popleft()
                failure: Exception | None = None
                lane.calling += 1
                try:
                    await self._compare(lane, pair)
                except Exception as error:  # any failure of the endpoint is counted alike
                    failure = error
                lane.calling -= 1
                if failure is not None:
                    self.metrics.window(pair.model, pair.version, pair.role).compare_dropped += 1
                    if not lane.failing:
                        lane.failing = True
                        # The error's text only: never the request, which holds the key.
                        log.warning(
                            "comparator of model %r (%s at %s) failed: %s: %s; comparisons "
                            "are dropped and counted until it answers",
                            pair.model,
                            lane.spec.kind.value,
                            lane.spec.url,
                            type(failure).__name__,
                            failure,
                        )
                else:
                    lane.failing = False
        finally:
            lane.running -= 1

    async def _compare(self, lane: _Lane, pair: TextPair) -> None:
        spec = lane.spec
        client = self._client(lane)
        window_of = self.metrics.window
        if spec.kind is ComparatorKind.EMBEDDING:
            body: dict[str, Any] = {
                "model": spec.model,
                "input": [pair.stable_text, pair.candidate_text],
            }
            data = await _post(client, f"{spec.url}/embeddings", body)
            rows = sorted(data["data"], key=lambda row: row.get("index", 0))
            score = cosine(rows[0]["embedding"], rows[1]["embedding"])
            window = window_of(pair.model, pair.version, pair.role)
            window.compared += 1
            window.agreed += score >= spec.threshold
            return
        candidate_first = judge_order(self._draw)
        first, second = (
            (pair.candidate_text, pair.stable_text)
            if candidate_first
            else (pair.stable_text, pair.candidate_text)
        )
        body = {
            "model": spec.model,
            "messages": judge_messages(pair.request_text, first, second, spec.prompt),
            "temperature": 0,
            "response_format": {"type": "json_object"},
        }
        data = await _post(client, f"{spec.url}/chat/completions", body)
        verdict = read_verdict(data["choices"][0]["message"]["content"], candidate_first)
        window = window_of(pair.model, pair.version, pair.role)
        if verdict is Preference.TIE:
            window.ties += 1
        else:
            window.judged += 1
            window.wins += verdict is Preference.CANDIDATE

    def _client(self, lane: _Lane) -> httpx.AsyncClient:
        if lane.client is None:
            spec = lane.spec
            headers = {}
            if spec.api_key_env is not None:
                key = self._environ.get(spec.api_key_env, "")
                if key:
                    headers["authorization"] = f"Bearer {key}"
            lane.client = httpx.AsyncClient(
                headers=headers,
                timeout=httpx.Timeout(spec.timeout_s),
                limits=httpx.Limits(max_connections=spec.concurrency),
            )
        return lane.client

    async def close(self) -> None:
        """Drop what waits (counted) and close the endpoints' connections."""
        for lane in self._lanes.values():
            while lane.queue:
                pair = lane.queue.popleft()
                self.metrics.window(pair.model, pair.version, pair.role).compare_dropped += 1
            client, lane.client = lane.client, None
            if client is not None:
                await client.aclose()


async def _post(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> Any:
    response = await client.post(url, json=body)
    response.raise_for_status()
    return response.json()


def text_rows(values: Any) -> list[str] | None:
    """The rows of an answer when every one is text, else None (not for a comparator)."""
    rows = list(values)
    if not rows or not all(isinstance(v, str) for v in rows):
        return None
    return rows


def request_text(request: Any, row: int) -> str:
    """The text of row ``row`` of a request's first input, when it is text: what a judge
    is shown as the question. Empty for other requests (a judge then sees the answers)."""
    inputs = getattr(request, "inputs", None)
    if not inputs:
        return ""
    data = getattr(inputs[0], "data", None)
    if isinstance(data, list | tuple) and row < len(data) and isinstance(data[row], str):
        return str(data[row])
    return ""
