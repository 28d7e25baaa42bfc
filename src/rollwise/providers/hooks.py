"""Hook calls: the HTTP side of ``webhook`` and ``confirm`` steps and lifecycle hooks.

The controller never waits on a hook. At a hook step, :meth:`HookCalls.poll` starts the
call in a small thread pool and returns at once; a later tick reads the outcome and hands
it to the state machine. One call per step: the step's index and start time name it, so
ticks that find it still running, or done, never start it again; a ``confirm`` step is
polled again ``interval_s`` after its last answer until it answers 2xx.

``post_promotion`` and ``on_rollback`` hooks are notifications: :meth:`HookCalls.notify`
queues them, and their outcomes come back as events for the controller to write
(:meth:`HookCalls.drain_events`); a failure changes nothing.

Outcomes live in this process's memory: a new controller leader calls a hook of the
current step again. Hooks must therefore be idempotent (as in Argo Rollouts and Flagger).
Header values from the environment are read at each call and never logged.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from rollwise.domain import Event
from rollwise.rollout import Phase, RolloutSpec, RolloutStatus
from rollwise.rollout.hook_steps import HOOK_EVENT, hook_payload
from rollwise.rollout.hooks import (
    BODY_EXCERPT_CHARS,
    Confirm,
    Header,
    HookCall,
    HookKind,
    HookOutcome,
    Webhook,
)

log = logging.getLogger("rollwise.hooks")

BACKOFF_S = 0.5
"""The wait before the first retry; it doubles for each next one, up to ``MAX_BACKOFF_S``."""
MAX_BACKOFF_S = 8.0
BODY_READ_BYTES = 4096
"""At most this much of an answer is read: its start is all an event shows."""
WORKERS = 4
MAX_EVENTS = 1000
"""Outcome events waiting for the controller's next tick; older ones are dropped."""

Post = Callable[[str, Mapping[str, str], bytes, float], tuple[int, str]]
"""(url, headers, body, timeout_s) -> (status, start of the body); raises on no answer."""


class HeaderMissing(Exception):
    """A header's environment variable is not set."""


def resolve_headers(headers: Sequence[Header], env: Mapping[str, str]) -> dict[str, str]:
    """The headers to send, values from ``env`` where the spec names a variable."""
    out = {"content-type": "application/json", "user-agent": "rollwise-hooks"}
    for header in headers:
        if header.env:
            if header.env not in env:
                raise HeaderMissing(
                    f"header {header.name}: environment variable {header.env} is not set"
                )
            out[header.name] = env[header.env]
        else:
            out[header.name] = header.value
    return out


def call_hook(
    call: HookCall,
    payload: Mapping[str, Any],
    post: Post,
    *,
    env: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[bool, int | None, str, str, int, float]:
    """POST ``payload`` to the hook, retrying a non-2xx, a timeout or a refused
    connection ``call.retries`` times with backoff. Returns (ok, last status, error,
    start of the last body, attempts, seconds spent)."""
    started = clock()
    try:
        headers = resolve_headers(call.headers, os.environ if env is None else env)
    except HeaderMissing as missing:
        return False, None, str(missing), "", 0, 0.0
    body = json.dumps(payload, default=str).encode()
    status: int | None = None
    error = text = ""
    attempts = 0
    for attempt in range(call.retries + 1):
        if attempt:
            sleep(min(MAX_BACKOFF_S, BACKOFF_S * 2 ** (attempt - 1)))
        attempts += 1
        try:
            status, text = post(call.url, headers, body, call.timeout_s)
            error = ""
        except httpx.TimeoutException:
            status, text, error = None, "", f"timed out after {call.timeout_s:g} s"
        except httpx.HTTPError as failure:
            status, text, error = None, "", f"no answer ({type(failure).__name__}: {failure})"
        if status is not None and 200 <= status < 300:
            return True, status, "", text, attempts, clock() - started
    return False, status, error, text, attempts, clock() - started


def _excerpt(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    return " ".join(text.split())[:BODY_EXCERPT_CHARS]


def httpx_post(client: httpx.Client) -> Post:
    """A :data:`Post` over ``client``, reading at most ``BODY_READ_BYTES`` of the answer."""

    def post(
        url: str, headers: Mapping[str, str], body: bytes, timeout_s: float
    ) -> tuple[int, str]:
        request = client.build_request(
            "POST", url, headers=dict(headers), content=body, timeout=timeout_s
        )
        response = client.send(request, stream=True)
        try:
            read = b""
            for chunk in response.iter_bytes():
                read += chunk
                if len(read) >= BODY_READ_BYTES:
                    break
            return response.status_code, _excerpt(read[:BODY_READ_BYTES])
        finally:
            response.close()

    return post


@dataclass
class _Slot:
    """The calls of one rollout's current hook step."""

    key: tuple[int, float]
    running: Future[HookOutcome] | None = None
    last: HookOutcome | None = None
    answered_s: float = 0.0


class HookCalls:
    """Hook calls of the rollouts one controller moves on (see the module docstring).
    ``post``: how a call is sent (default: httpx, redirects not followed)."""

    def __init__(self, post: Post | None = None, *, workers: int = WORKERS) -> None:
        self.post = post
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._client: httpx.Client | None = None
        self._slots: dict[int, _Slot] = {}
        self._events: deque[Event] = deque(maxlen=MAX_EVENTS)
        self._lock = threading.Lock()

    def _submit(self, work: Callable[[], Any]) -> Future[Any]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="rollwise-hook")
        return self._pool.submit(work)

    def _post(self) -> Post:
        # Called from the pool's threads: one client for all of them, made once.
        with self._lock:
            if self.post is None:
                # Redirects are not followed: the hook named in the spec answers for itself.
                self._client = httpx.Client(follow_redirects=False)
                self.post = httpx_post(self._client)
            return self.post

    def poll(
        self, rollout_id: int, spec: RolloutSpec, status: RolloutStatus, now: float
    ) -> HookOutcome | None:
        """The latest outcome of the current hook step's call, starting the call when
        it is due; None while none has ended (or the step is no hook step)."""
        index = status.step_index
        step = spec.steps[index] if 0 <= index < len(spec.steps) else None
        if not isinstance(step, Webhook | Confirm) or status.phase is not Phase.PROGRESSING:
            self._slots.pop(rollout_id, None)
            return None
        key = (index, status.step_started_s)
        slot = self._slots.get(rollout_id)
        if slot is None or slot.key != key:
            slot = self._slots[rollout_id] = _Slot(key)
        if slot.running is not None and slot.running.done():
            slot.last, slot.running, slot.answered_s = slot.running.result(), None, now
        due = slot.last is None or (
            isinstance(step, Confirm)
            and not slot.last.ok
            and now - slot.answered_s >= step.interval_s
        )
        if slot.running is None and due:
            kind = step.kind if isinstance(step, Webhook) else HookKind.CONFIRM
            payload = hook_payload(spec, status, kind, rollout_id=rollout_id, now=now)
            slot.running = self._submit(lambda: self._outcome(step.call, payload, key))
        return slot.last

    def _outcome(
        self, call: HookCall, payload: Mapping[str, Any], key: tuple[int, float]
    ) -> HookOutcome:
        try:
            ok, status, error, body, attempts, spent = call_hook(call, payload, self._post())
        except Exception as failure:  # a bug here must still end the step's wait
            log.exception("hook %s failed", call.url)
            ok, status, error, body, attempts, spent = False, None, repr(failure), "", 1, 0.0
        return HookOutcome(key[0], key[1], call.url, ok, status, error, body, attempts, spent)

    def forget(self, active: set[int]) -> None:
        """Drop the calls of rollouts no longer in progress."""
        for gone in set(self._slots) - active:
            del self._slots[gone]

    def notify(
        self,
        rollout_id: int,
        spec: RolloutSpec,
        status: RolloutStatus,
        kind: HookKind,
        calls: Sequence[HookCall],
        now: float,
    ) -> None:
        """Call outcome hooks in the background; their outcomes become events."""
        if not calls:
            return
        payload = hook_payload(spec, status, kind, rollout_id=rollout_id, now=now)

        def run() -> None:
            for call in calls:
                outcome = self._outcome(call, payload, (status.step_index, status.step_started_s))
                said = "answered" if outcome.ok else "failed (nothing changes)"
                event = Event(
                    model=status.model,
                    kind=HOOK_EVENT,
                    message=f"{kind.value} hook {said}: {outcome.answer()}",
                    data={"hook": kind.value, "rollout": rollout_id, **outcome.to_dict()},
                    at_s=time.time(),
                    actor="controller",
                )
                if not outcome.ok:
                    log.warning("%s: %s", status.model, event.message)
                with self._lock:
                    self._events.append(event)

        self._submit(run)

    def drain_events(self) -> list[Event]:
        """Outcome events since the last drain, oldest first."""
        with self._lock:
            events = list(self._events)
            self._events.clear()
        return events

    def close(self) -> None:
        """Stop taking calls; those running end by their own timeouts."""
        pool, self._pool = self._pool, None
        if pool is not None:
            # The calls already running end by their own timeouts, on the client, which
            # is closed once they have.
            pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            client, self._client = self._client, None
            if client is not None:
                self.post = None
        if client is not None:
            if pool is not None:
                threading.Thread(
                    target=_close_after,
                    args=(pool, client),
                    name="rollwise-hook-close",
                    daemon=True,
                ).start()
            else:
                client.close()


def _close_after(pool: ThreadPoolExecutor, client: httpx.Client) -> None:
    pool.shutdown(wait=True)
    client.close()
