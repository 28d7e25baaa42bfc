"""A lean HTTP/1.1 server for ASGI 3 apps: asyncio protocols and httptools' parser.

``rollwise serve`` runs the gateway on it. It keeps the per-request work small: one task
per request, no per-request timers (a sweeper closes idle connections), the response
head and a one-shot body leave in a single ``transport.write``, and reading is only
paused when there is a reason to (pipelined requests queued, a body the app is slow to
take, or a client that does not read its answers).

One client can exhaust nothing:

- *backpressure*: while a connection's write buffer is over the transport's high-water
  mark, the server stops reading from it and starts none of its queued requests; at most
  ``max_pipelined`` requests wait behind the one being answered; a connection whose
  buffer does not drain within ``drain_timeout_s`` is aborted, and its buffer with it;
- *deadlines*: a request's headers and body must arrive within ``body_timeout_s``
  (else 408 and close); idle keep-alive connections close after ``keep_alive_s``;
- *a connection cap*: over ``max_connections`` a new connection gets 503 and is closed.

All deadlines are kept by the one sweeper timer, never by a timer per request; what is
refused or cut off is logged at most once per ``LOG_EVERY_S`` with a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http import HTTPStatus
from typing import Any, Final, cast
from urllib.parse import unquote

import httptools

from rollwise.config import ServerSection

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("rollwise.http")

ASGI_VERSION: Final = {"version": "3.0", "spec_version": "2.3"}
DEFAULT_KEEP_ALIVE_S: Final = 5.0
DEFAULT_MAX_HEADER_BYTES: Final = 64 * 1024
DEFAULT_GRACE_S: Final = 10.0
# On stop, idle keep-alive connections stay open this long (within the grace): a client
# may have sent a request on one already, which closing it would reset unanswered.
DEFAULT_STOP_LINGER_S: Final = 0.5
# Body bytes buffered for an app that has not asked for them yet, before reading pauses.
BODY_HIGH_WATER: Final = 64 * 1024
# A response that ends before its request body was read: up to this much more body is
# read and dropped, so that the client (still sending) gets the answer and keeps the
# connection; beyond it the connection is closed instead.
MAX_DRAIN_BYTES: Final = 64 * 1024 * 1024
DEFAULT_BODY_TIMEOUT_S: Final = 30.0
DEFAULT_DRAIN_TIMEOUT_S: Final = 30.0
DEFAULT_MAX_CONNECTIONS: Final = 1000
DEFAULT_MAX_PIPELINED: Final = 64
# No request that keeps its connection is shorter ("GET / HTTP/1.1\r\n\r\n" is 18
# bytes): a slice of ``n * MIN_REQUEST_BYTES`` bytes cannot start more than n requests,
# which is how the parser is kept from queueing more than ``max_pipelined``.
MIN_REQUEST_BYTES: Final = 16
# While a body is being read, slices are at least this long, so that a large body is not
# fed in tiny pieces; the price is that the slice ending a body may queue up to
# 4096 / 18 = 227 requests beyond ``max_pipelined``.
BODY_SLICE: Final = 4096
# Header bytes of queued requests per connection before reading pauses.
MAX_QUEUED_HEADER_BYTES: Final = 256 * 1024
# Refusals and cut-offs are logged at most this often (per kind), with a count.
LOG_EVERY_S: Final = 10.0

_STATUS_LINES: dict[int, bytes] = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode("latin-1"))
    for status in HTTPStatus
}
_CLOSE: Final = b"connection: close\r\n"
_KEEP_ALIVE: Final = b"connection: keep-alive\r\n"
_CHUNKED: Final = b"transfer-encoding: chunked\r\n"
_LAST_CHUNK: Final = b"0\r\n\r\n"
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_NO_BODY_STATUSES: Final = frozenset({204, 304})
_DISCONNECT: Final = {"type": "http.disconnect"}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d \r\n" % status
    return line


def _error_response(status: int, message: str) -> bytes:
    body = b'{"error":"%s"}' % message.encode("ascii")
    return b"".join(
        (
            _status_line(status),
            b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body),
            _CLOSE,
            b"\r\n",
            body,
        )
    )


_BAD_REQUEST: Final = _error_response(400, "malformed HTTP request")
_HEADERS_TOO_LARGE: Final = _error_response(431, "request headers too large")
_SERVER_ERROR: Final = _error_response(500, "internal server error")
_REQUEST_TIMEOUT: Final = _error_response(408, "request not received in time")
_OVERLOADED: Final = _error_response(503, "too many connections").replace(
    b"\r\n\r\n", b"\r\nretry-after: 1\r\n\r\n", 1
)


class _Notice:
    """A warning logged at most once per ``every_s``, saying how often it happened since.

    A flood of slow or surplus clients must not become a flood of log lines too.
    """

    __slots__ = ("count", "every_s", "last", "message")

    def __init__(self, message: str, every_s: float = LOG_EVERY_S) -> None:
        self.message = message
        self.every_s = every_s
        self.count = 0
        self.last = float("-inf")

    def __call__(self, now: float) -> None:
        self.count += 1
        if now - self.last >= self.every_s:
            self.last = now
            log.warning("%s (%d time(s) since the last such warning)", self.message, self.count)
            self.count = 0


class StartupFailed(Exception):
    """The app's lifespan startup failed: the server does not listen."""


class _HeadersTooLarge(Exception):
    pass


class _Cycle:
    """One request and its response: the ``receive`` and ``send`` an app call gets."""

    __slots__ = (
        "body",
        "body_size",
        "chunked",
        "complete",
        "conn",
        "continue_pending",
        "delivered",
        "discarding",
        "disconnected",
        "finished",
        "head",
        "keep_alive",
        "no_body",
        "scope",
        "sent",
        "size",
        "started",
        "task",
        "waiter",
    )

    def __init__(
        self, conn: _Connection, scope: Scope, keep_alive: bool, expect_continue: bool
    ) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.continue_pending = expect_continue
        self.no_body = scope["method"] == "HEAD"
        self.body: list[bytes] = []
        self.body_size = 0
        # complete: the parser saw the whole request; delivered: the app got its end.
        self.complete = False
        self.delivered = False
        self.discarding = False
        self.disconnected = False
        # started: http.response.start came; sent: bytes went out; finished: the last body.
        self.started = False
        self.sent = False
        self.finished = False
        self.chunked = False
        self.head = b""
        # Header bytes, counted against the connection's bound while the cycle is queued.
        self.size = 0
        # Held here so that the running app is never left to the garbage collector.
        self.task: asyncio.Task[None] | None = None
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def feed(self, data: bytes) -> None:
        self.body_size += len(data)
        if self.discarding:
            if self.body_size > MAX_DRAIN_BYTES:
                self.conn.close()
            return
        self.body.append(data)
        if self.body_size > BODY_HIGH_WATER:
            self.conn.pause_reading_for_body()
        self.wake()

    async def receive(self) -> Message:
        while True:
            body = self.body
            if body:
                data = body[0] if len(body) == 1 else b"".join(body)
                self.body = []
                if self.body_size > BODY_HIGH_WATER:
                    self.conn.resume_reading_for_body()
                self.body_size = 0
                self.delivered = self.complete
                return {"type": "http.request", "body": data, "more_body": not self.complete}
            if self.complete and not self.delivered:
                self.delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.disconnected or self.finished:
                return dict(_DISCONNECT)
            if self.continue_pending and not self.complete:
                self.continue_pending = False
                if not self.started:
                    self.conn.write(_CONTINUE)
            # Wait for more body, or, after the whole body, for the client to leave. Callers
            # waiting at once (a body reader and a disconnect listener) share one future.
            waiter = self.waiter
            if waiter is None:
                waiter = self.waiter = self.conn.loop.create_future()
            await waiter

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if not self.started or self.finished:
                raise RuntimeError(f"unexpected ASGI message {kind!r}")
            body: bytes = message.get("body", b"")
            if message.get("more_body", False):
                if not self.disconnected:
                    self._write_part(body)
                    await self.conn.drain()
            else:
                self._write_last(body)
        elif kind == "http.response.start":
            if self.started:
                raise RuntimeError("the response has already started")
            self._prepare(message["status"], message.get("headers", ()))
            self.started = True
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")

    def _prepare(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """Build the head up to the framing, which the first body message decides."""
        parts = [_status_line(status)]
        has_length = False
        lines = 1
        for name, value in headers:
            # Only three names matter to framing; their lengths rule most names out cheaply.
            size = len(name)
            if size == 14 and name.lower() == b"content-length":
                has_length = True
            elif size == 10 and name.lower() == b"connection":
                if value.lower() == b"close":
                    self.keep_alive = False
                continue
            elif size == 17 and name.lower() == b"transfer-encoding":
                continue
            parts += (name, b": ", value, b"\r\n")
            lines += 1
        head = b"".join(parts)
        # One count over the head instead of a search per header: a name or value with a
        # line break in it would smuggle in a header or a response of its own.
        if head.count(b"\n") != lines or head.count(b"\r") != lines:
            raise RuntimeError("a response header holds a line break")
        if status in _NO_BODY_STATUSES or status < 200:
            self.no_body = True
        # chunked doubles as "the app gave no length" until the framing is chosen.
        self.chunked = not has_length and not self.no_body
        self.head = head

    def _end_head(self, framing: bytes) -> bytes:
        keep_alive = self.keep_alive
        if self.conn.closing or (self.continue_pending and not self.complete):
            # Shutting down, or a client told to wait for 100 may or may not send its body.
            keep_alive = False
        self.keep_alive = keep_alive
        if not keep_alive:
            return self.head + framing + _CLOSE + b"\r\n"
        if self.scope["http_version"] != "1.1":
            return self.head + framing + _KEEP_ALIVE + b"\r\n"
        return self.head + framing + b"\r\n"

    def _write_part(self, body: bytes) -> None:
        if self.sent:
            head = b""
        else:
            self.sent = True
            if self.chunked and self.scope["http_version"] == "1.1":
                head = self._end_head(_CHUNKED)
            else:
                if self.chunked:
                    # HTTP/1.0 knows no chunks: the end of the connection ends the body.
                    self.chunked = False
                    self.keep_alive = False
                head = self._end_head(b"")
        if self.no_body:
            body = b""
        elif self.chunked and body:
            body = b"%x\r\n%b\r\n" % (len(body), body)
        if head or body:
            self.conn.write(head + body if head else body)

    def _write_last(self, body: bytes) -> None:
        self.finished = True
        if self.no_body:
            body = b""
        if not self.sent:
            self.sent = True
            if self.chunked:
                # The whole body is here: its length is known after all.
                self.chunked = False
                head = self._end_head(b"content-length: %d\r\n" % len(body))
            else:
                head = self._end_head(b"")
            # Head and body in one write: one system call, one segment for small answers.
            if not self.disconnected:
                self.conn.write(head + body)
        elif not self.disconnected:
            if self.chunked:
                body = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body) if body else _LAST_CHUNK
            if body:
                self.conn.write(body)
        self.wake()
        self.conn.response_done(self)

    def fail(self) -> None:
        """The app raised or returned without finishing: answer 500 if nothing went out."""
        self.finished = True
        self.keep_alive = False
        self.wake()
        if not self.sent and not self.disconnected:
            self.sent = True
            self.conn.write(_SERVER_ERROR)
        self.conn.response_done(self)


class _Connection(asyncio.Protocol):
    """One client connection: parses requests and runs the app for each, in order."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.app = server.app
        self.loop = server.loop
        self.max_header_bytes = server.max_header_bytes
        self.max_pipelined = server.max_pipelined
        # Chunks up to this long cannot hold more requests than an empty queue has room
        # for: they go to the parser whole, as almost every chunk does.
        self.fast_bytes = server.max_pipelined * MIN_REQUEST_BYTES
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.expect_continue = False
        self.base_scope: dict[str, Any] = {}
        # The cycle whose response is being made, the one being parsed, and those waiting.
        self.cycle: _Cycle | None = None
        self.parsing: _Cycle | None = None
        self.queue: deque[_Cycle] = deque()
        self.queued_bytes = 0
        # Bytes read but not parsed yet, while the queue is full or the client is not
        # reading its answers; fed to the parser before anything more is read.
        self.held = b""
        self.feeding_held = False
        self.closing = False
        self.closed = False
        self.refusal = b""
        self.reading_paused = False
        self.body_paused = False
        self.write_paused = False
        self.write_paused_since = 0.0
        # Parsing stopped for good (an upgrade or a refusal waits for earlier answers).
        self.halted = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.idle_since = 0.0
        # What the sweeper saw being read (a request's header list) and since when.
        self.watched: object = None
        self.watched_since = 0.0
        self.refused = False

    # -- transport events ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, though they behave as one.
        self.transport = cast(asyncio.Transport, transport)
        server = self.server
        if len(server.connections) >= server.max_connections:
            self._refuse_connection()
            return
        server.connections.add(self)
        server.accepted += 1
        self.idle_since = self.loop.time()
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.base_scope = {
            "type": "http",
            "asgi": ASGI_VERSION,
            "scheme": "http",
            "root_path": "",
            "client": tuple(peer[:2]) if isinstance(peer, tuple) else None,
            "server": tuple(local[:2]) if isinstance(local, tuple) else None,
        }
        if server.state:
            self.base_scope["state"] = server.state

    def _refuse_connection(self) -> None:
        """Over ``max_connections``: answer 503 at once and close, without reading."""
        self.refused = True
        self.closed = True
        server = self.server
        server.refused += 1
        server.notice_refused(self.loop.time())
        transport = self.transport
        transport.pause_reading()
        transport.write(_OVERLOADED)
        transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.refused:
            return
        self.held = b""
        self.queued_bytes = 0
        self.server.connections.discard(self)
        for cycle in (self.cycle, self.parsing, *self.queue):
            if cycle is not None:
                cycle.disconnected = True
                cycle.wake()
        self.queue.clear()
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self.server.forget(self)

    def eof_received(self) -> bool:
        parsing = self.parsing
        if parsing is not None and not parsing.complete:
            # Half a request is all there will ever be.
            return False
        # Keep writing the answers to what already arrived, then close.
        self.closing = True
        return self.cycle is not None or bool(self.queue) or bool(self.held)

    def pause_writing(self) -> None:
        # The client is not reading its answers as fast as they come: read nothing more
        # and start no queued request until it does (or the drain deadline ends it).
        self.write_paused = True
        self.write_paused_since = self.loop.time()
        self.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self.cycle is None and self.queue:
            self._start_next()
        self._update_reading()

    def data_received(self, data: bytes) -> None:
        if self.held:
            # Read before the pause took effect: keep the order, parse it later.
            self.held += data
            self.pause_reading()
        elif len(data) <= self.fast_bytes and not self.queue:
            self._feed(data)
        else:
            self._feed_bounded(data)

    def _feed_bounded(self, data: bytes) -> None:
        """Parse ``data`` in slices, holding back the rest once this connection has enough.

        The parser cannot be stopped between two requests of one chunk, so the chunk is
        cut into slices short enough that none can overflow the queue.
        """
        view = memoryview(data)
        start = 0
        end = len(data)
        while start < end:
            room = self.max_pipelined - len(self.queue)
            if (
                room <= 0
                or self.queued_bytes > MAX_QUEUED_HEADER_BYTES
                or self.write_paused
                or self.body_paused
                or self.halted
                or self.closed
            ):
                if not self.closed:
                    self.held = bytes(view[start:])
                    self.pause_reading()
                return
            step = room * MIN_REQUEST_BYTES
            if self.parsing is not None and step < BODY_SLICE:
                step = BODY_SLICE
            self._feed(view[start : start + step])
            start += step

    def _feed_held(self) -> None:
        self.feeding_held = False
        held, self.held = self.held, b""
        if held and not self.closed:
            self._feed_bounded(held)
            if self.closing and self.cycle is None and not self.queue and not self.held:
                # The client had ended its side: what it sent is answered.
                self.close()
                return
            self._update_reading()

    def _feed(self, data: bytes | memoryview) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No protocol switch is offered: answer what was asked, then close.
            self.closing = True
            self.halted = True
            self.pause_reading()
        except httptools.HttpParserCallbackError as error:
            # The parser keeps what a callback raised as the context of its own error.
            cause = error.__context__
            if isinstance(cause, _HeadersTooLarge):
                self._refuse(_HEADERS_TOO_LARGE)
            elif isinstance(cause, httptools.HttpParserError):
                # An absolute-form target that is no URL.
                self._refuse(_BAD_REQUEST)
            else:
                log.error("HTTP request handling failed", exc_info=error.__context__)
                self._refuse(_SERVER_ERROR)
        except httptools.HttpParserError:
            self._refuse(_BAD_REQUEST)

    def _refuse(self, response: bytes) -> None:
        """A request that cannot be parsed: answered after those before it, then the end."""
        broken = self.parsing
        self.parsing = None
        if broken is not None:
            if broken is self.cycle:
                # Its app is already reading a body that will never be whole.
                broken.disconnected = True
                broken.wake()
                self.close()
                return
            with contextlib.suppress(ValueError):
                self.queue.remove(broken)
        if self.cycle is None and not self.queue:
            self.write(response)
            self.close()
        else:
            self.refusal = response
            self.closing = True
            self.halted = True
            self.held = b""
            self.pause_reading()

    # -- parser callbacks -------------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)
        if self.header_bytes > self.max_header_bytes:
            raise _HeadersTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.max_header_bytes:
            raise _HeadersTooLarge
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        url = self.url
        raw_path, _, query = url.partition(b"?")
        if raw_path[:1] != b"/" and raw_path != b"*":
            parsed = httptools.parse_url(url)
            raw_path = parsed.path or b"/"
            query = parsed.query or b""
        path = raw_path.decode("utf-8", "replace")
        if "%" in path:
            path = unquote(path)
        scope = self.base_scope.copy()
        scope["http_version"] = parser.get_http_version()
        scope["method"] = parser.get_method().decode("ascii")
        scope["path"] = path
        scope["raw_path"] = raw_path
        scope["query_string"] = query
        scope["headers"] = self.headers
        # What the parser gathered for this request starts afresh for the next one.
        self.url = b""
        self.headers = []
        self.header_bytes = 0
        if "state" in scope:
            scope["state"] = scope["state"].copy()
        keep_alive = parser.should_keep_alive() and not self.closing
        cycle = _Cycle(self, scope, keep_alive, self.expect_continue)
        self.expect_continue = False
        self.parsing = cycle
        if self.cycle is None and not self.write_paused:
            self.cycle = cycle
            cycle.task = self.loop.create_task(self._run(cycle))
        else:
            # Only queued requests are measured: the hot path (nothing queued) pays nothing.
            cycle.size = len(url) + sum(len(n) + len(v) + 4 for n, v in cycle.scope["headers"])
            self.queued_bytes += cycle.size
            self.queue.append(cycle)
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        cycle = self.parsing
        if cycle is not None:
            cycle.feed(body)

    def on_message_complete(self) -> None:
        cycle = self.parsing
        if cycle is None:
            return
        self.parsing = None
        cycle.complete = True
        cycle.wake()
        if cycle.discarding:
            cycle.discarding = False
            self._next(cycle)

    # -- running the app --------------------------------------------------------------------

    async def _run(self, cycle: _Cycle) -> None:
        try:
            await self.app(cycle.scope, cycle.receive, cycle.send)
        except BaseException as error:
            if not cycle.finished:
                if not cycle.disconnected:
                    log.error("the app failed on %s", cycle.scope["path"], exc_info=error)
                # 500 if nothing went out yet; either way the connection is not reused.
                cycle.fail()
            if not isinstance(error, Exception):
                raise
        else:
            if not cycle.finished:
                if not cycle.disconnected:
                    log.error(
                        "the app returned before finishing its response"
                        if cycle.sent
                        else "the app returned without a response"
                    )
                cycle.fail()

    def response_done(self, cycle: _Cycle) -> None:
        if self.closed or cycle is not self.cycle:
            return
        if not cycle.keep_alive:
            self.close()
            return
        if not cycle.complete:
            if cycle.body_size > MAX_DRAIN_BYTES:
                self.close()
                return
            # The app left part of the body unread: read it and drop it before the next.
            cycle.discarding = True
            cycle.body = []
            self.resume_reading_for_body()
            return
        self._next(cycle)

    def _next(self, done: _Cycle) -> None:
        if self.closed or done is not self.cycle:
            return
        self.cycle = None
        if self.queue and self.write_paused:
            # The client is not reading its answers: the next waits until it does.
            return
        self._start_next()

    def _start_next(self) -> None:
        if self.queue:
            cycle = self.queue.popleft()
            self.queued_bytes -= cycle.size
            self.cycle = cycle
            cycle.task = self.loop.create_task(self._run(cycle))
            if self.reading_paused:
                self._update_reading()
            return
        if self.closing and not self.held:
            if self.refusal:
                self.write(self.refusal)
            self.close()
            return
        self.idle_since = self.loop.time()
        if self.reading_paused:
            self._update_reading()

    # -- flow control -----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)

    async def drain(self) -> None:
        if self.write_paused and not self.closed:
            waiter = self.drain_waiter
            if waiter is None:
                waiter = self.drain_waiter = self.loop.create_future()
            await waiter

    def pause_reading(self) -> None:
        if not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def pause_reading_for_body(self) -> None:
        self.body_paused = True
        self.pause_reading()

    def resume_reading_for_body(self) -> None:
        if self.body_paused:
            self.body_paused = False
            self._update_reading()

    def _update_reading(self) -> None:
        """Read on unless something still holds reading: first the bytes held back."""
        if self.closed or self.halted or self.write_paused or self.body_paused:
            return
        if self.held:
            if len(self.queue) < self.max_pipelined and not self.feeding_held:
                # Soon, not now: the caller may be in the middle of a receive or a send.
                self.feeding_held = True
                self.loop.call_soon(self._feed_held)
            return
        if not self.queue:
            self.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        """Close at once, dropping whatever is still buffered for the client."""
        self.closed = True
        self.held = b""
        self.transport.abort()

    # -- deadlines, kept by the server's sweeper ---------------------------------------------

    def sweep(self, now: float) -> None:
        """Close this connection if a deadline has passed: drain, request, or idle."""
        server = self.server
        if self.write_paused:
            if now - self.write_paused_since > server.drain_timeout_s:
                server.drain_timeouts += 1
                server.notice_drain_timeout(now)
                self.abort()
            return
        reading = self._reading()
        if reading is None:
            self.watched = None
            if (
                self.cycle is None
                and self.parsing is None
                and not self.queue
                and now - self.idle_since > server.keep_alive_s
            ):
                self.close()
            return
        watched = self.watched
        if reading is not watched:
            self.watched = reading
            self.watched_since = now
        elif now - self.watched_since > server.body_timeout_s:
            self._read_timed_out(now)
            return
        if (
            self.cycle is None
            and self.parsing is None
            and now - self.idle_since > server.keep_alive_s
        ):
            # Half a request on an idle connection: it had the keep-alive time to come.
            self._read_timed_out(now)

    def _reading(self) -> object:
        """The request whose bytes the client owes (its header list), or None if none.

        A request held up by the server (reading paused: queued requests, a body the app
        has not taken, a 100 Continue not yet sent) is not the client's delay. The header
        list stands for the request from its first header to its last body byte, so one
        deadline covers both.
        """
        if self.reading_paused:
            return None
        parsing = self.parsing
        if parsing is not None:
            return None if parsing.continue_pending else parsing.scope["headers"]
        return self.headers if self.header_bytes else None

    def _read_timed_out(self, now: float) -> None:
        """The client took too long to send its request: 408 when possible, then close."""
        server = self.server
        server.read_timeouts += 1
        server.notice_read_timeout(now)
        parsing = self.parsing
        if parsing is not None:
            # Its app, if running, hears that the client is gone and writes nothing more.
            parsing.disconnected = True
            parsing.wake()
        cycle = self.cycle
        if cycle is None or (cycle is parsing and not cycle.sent):
            self.write(_REQUEST_TIMEOUT)
            self.close()
        else:
            # Another answer is in flight: finish it, then the 408 and the end.
            self.refusal = _REQUEST_TIMEOUT
            self.closing = True
            self.halted = True
            self.held = b""
            self.pause_reading()

    @property
    def idle(self) -> bool:
        """No request being read, answered or queued: between two (or before the first)."""
        return (
            self.cycle is None
            and self.parsing is None
            and not self.queue
            and not self.held
            and not self.header_bytes
        )

    def shutdown(self) -> None:
        """Stop taking requests: close now when idle, else after the answer in flight."""
        self.closing = True
        if self.cycle is None:
            self.close()


class HTTPServer:
    """Serves an ASGI app over HTTP/1.1 on one listening socket.

    ``start`` runs the app's lifespan startup and then listens; ``stop`` stops accepting,
    lets the requests in flight finish within the grace period, closes the rest, then runs
    the lifespan shutdown. ``stop_linger_s``: how long a stop keeps idle keep-alive
    connections open for requests already on their way (see ``stop``).
    """

    def __init__(
        self,
        app: ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        keep_alive_s: float = DEFAULT_KEEP_ALIVE_S,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        grace_s: float = DEFAULT_GRACE_S,
        lifespan: bool = True,
        backlog: int = 2048,
        body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
        drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_pipelined: int = DEFAULT_MAX_PIPELINED,
        sock: socket.socket | None = None,
        stop_linger_s: float = DEFAULT_STOP_LINGER_S,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        # A socket already bound and listening (a worker's, inherited from the
        # supervisor): served as it is, and ``host`` and ``port`` only name it.
        self.sock = sock
        self.keep_alive_s = keep_alive_s
        self.body_timeout_s = body_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.max_connections = max_connections
        self.max_pipelined = max_pipelined
        # What the limits did, for tests and operators: connections refused over the cap,
        # requests that did not arrive in time, clients that did not read their answers.
        self.refused = 0
        self.read_timeouts = 0
        self.drain_timeouts = 0
        self.notice_refused = _Notice(
            f"refused a connection with 503: max_connections ({max_connections}) are open"
        )
        self.notice_read_timeout = _Notice(
            f"closed a connection whose request did not arrive within {body_timeout_s} s (408)"
        )
        self.notice_drain_timeout = _Notice(
            f"closed a connection that left its answers unread for more than {drain_timeout_s} s"
        )
        self.max_header_bytes = max_header_bytes
        self.grace_s = grace_s
        self.stop_linger_s = stop_linger_s
        self.backlog = backlog
        self.use_lifespan = lifespan
        self.connections: set[_Connection] = set()
        self.accepted = 0
        self.state: dict[str, Any] = {}
        self.loop = asyncio.get_running_loop()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._lifespan: _Lifespan | None = None
        self._all_closed: asyncio.Future[None] | None = None
        self._stop_requested = asyncio.Event()

    async def start(self) -> None:
        """Run the lifespan startup, then listen; ``StartupFailed`` if either fails.

        Whatever fails or interrupts the start once the startup has begun (a port in
        use above all) runs the lifespan shutdown before it propagates, so the app's
        background work (the gateway's rollout controller thread among it) never
        outlives a server that did not start.
        """
        failure: BaseException | None = None
        try:
            if self.use_lifespan:
                self._lifespan = _Lifespan(self.app, self.state)
                await self._lifespan.startup()
            self._server = await self._listen()
            # Read as Any: uvloop's servers give a list where asyncio's type says tuple.
            sockets: Any = cast(Any, self._server).sockets
            if sockets:
                self.port = sockets[0].getsockname()[1]
            self._sweeper = self.loop.call_later(self._sweep_every(), self._sweep)
        except BaseException as error:
            failure = error
        if failure is not None:
            # Undone after the try, not in its handler (see rollwise.compilation).
            await self._abandon_start()
            raise failure

    async def start_unless_stopped(self) -> bool:
        """``start``, given up if a stop is asked for meanwhile: True once listening,
        False if the stop came first. A start given up is undone as a failed one is
        (see ``start``): the app's startup is cut short, or shut down if it had finished,
        so a signal during a slow start neither waits for it nor leaves it half done."""
        starting = asyncio.ensure_future(self.start())
        asked = asyncio.ensure_future(self._stop_requested.wait())
        # No await in a handler or a finally block (see rollwise.compilation): what
        # interrupted the wait is raised again once the start is given up.
        interrupted: BaseException | None = None
        try:
            await asyncio.wait((starting, asked), return_when=asyncio.FIRST_COMPLETED)
        except BaseException as error:
            interrupted = error
        asked.cancel()
        if not starting.done():
            starting.cancel()
            # asyncio.wait raises nothing of the task's own: its end is read below.
            await asyncio.wait((starting,))
        if interrupted is not None:
            raise interrupted
        if starting.cancelled():
            return False
        starting.result()
        return True

    async def _listen(self) -> asyncio.Server:
        if self.sock is not None:
            return await self.loop.create_server(
                lambda: _Connection(self), sock=self.sock, backlog=self.backlog
            )
        try:
            return await self.loop.create_server(
                lambda: _Connection(self),
                self.host,
                self.port,
                backlog=self.backlog,
                reuse_address=True,
            )
        except OSError as error:
            where = f"[{self.host}]" if ":" in self.host else self.host
            reason = os.strerror(error.errno).lower() if error.errno else str(error)
            raise StartupFailed(f"cannot listen on {where}:{self.port}: {reason}") from error

    async def _abandon_start(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        lifespan, self._lifespan = self._lifespan, None
        if lifespan is not None:
            try:
                await lifespan.abandon()
            except Exception:
                log.exception("the app's shutdown after a failed start failed")

    def _sweep(self) -> None:
        now = self.loop.time()
        for conn in list(self.connections):
            conn.sweep(now)
        self._sweeper = self.loop.call_later(self._sweep_every(), self._sweep)

    def _sweep_every(self) -> float:
        # One timer per server instead of one per request; idle connections live up to
        # half a timeout (at most a second) longer than the timeout. A request deadline is
        # only seen from the first sweep after the request began: it ends between
        # body_timeout_s and body_timeout_s plus two sweeps (at most 1.5 × its length).
        return min(1.0, self.keep_alive_s / 2, self.body_timeout_s / 4, self.drain_timeout_s / 4)

    def forget(self, conn: _Connection) -> None:
        closed = self._all_closed
        if not self.connections and closed is not None and not closed.done():
            closed.set_result(None)

    def request_stop(self) -> None:
        """Ask ``serve_until_stopped`` to stop (signal handlers call this); asked again,
        stop without waiting for the requests in flight."""
        if self._stop_requested.is_set():
            self.grace_s = 0.0
            if self._all_closed is not None and not self._all_closed.done():
                log.warning("stop requested again: closing connections without their answers")
                self._all_closed.set_result(None)
        self._stop_requested.set()

    async def serve_until_stopped(self) -> None:
        await self._stop_requested.wait()
        await self.stop()

    async def stop(self) -> None:
        """Tell the app (its ``begin_shutdown()``, if it has one), stop accepting, and
        give the requests in flight ``grace_s`` to be answered, with ``connection:
        close``; then cut what is left and run the lifespan shutdown. Each step is logged.

        Idle keep-alive connections are closed only after ``stop_linger_s``: a client
        may have sent its next request on one just now, and closing a connection with a
        request unread resets it, so the client would get neither an answer nor a
        chance to send it elsewhere. Within the linger such a request is answered, and
        the connection closed after it.
        """
        self._begin_app_shutdown()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._server is not None:
            self._server.close()
            self._server = None
        started = self.loop.time()
        self._all_closed = self.loop.create_future()
        busy = 0
        for conn in self.connections:
            # Every answer from now on says connection: close and ends its connection.
            conn.closing = True
            busy += not conn.idle
        idle = len(self.connections) - busy
        if busy:
            log.info(
                "stopping: no new connections; waiting up to %g s for the requests in flight "
                "on %d connection(s)",
                self.grace_s,
                busy,
            )
        else:
            log.info("stopping: no new connections; no request in flight")
        linger_s = min(self.stop_linger_s, self.grace_s)
        if idle and linger_s > 0:
            log.info(
                "keeping %d idle connection(s) open %g s for requests already sent on them",
                idle,
                linger_s,
            )
            await self._wait_all_closed(linger_s)
        for conn in list(self.connections):
            conn.shutdown()
        left_s = self.grace_s - (self.loop.time() - started)
        if self.connections and left_s > 0:
            await self._wait_all_closed(left_s)
        if busy and not self.connections:
            log.info("every request in flight was answered (%.1f s)", self.loop.time() - started)
        left = [conn for conn in self.connections if conn.transport is not None]
        if left:
            log.warning("closing %d connection(s) whose answers did not finish", len(left))
        for conn in left:
            conn.transport.abort()
        # Let the transports report their end before the app shuts down.
        await asyncio.sleep(0)
        if self._lifespan is not None:
            await self._lifespan.shutdown()
            self._lifespan = None

    def _begin_app_shutdown(self) -> None:
        begin_shutdown = getattr(self.app, "begin_shutdown", None)
        if callable(begin_shutdown):
            # First, so that the app fails its readiness before anything is drained.
            try:
                begin_shutdown()
            except Exception:
                log.exception("the app's begin_shutdown failed; stopping all the same")

    async def _wait_all_closed(self, timeout_s: float) -> None:
        """Until every connection has closed (or a second stop request), at most ``timeout_s``."""
        assert self._all_closed is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._all_closed), timeout_s)


class _Lifespan:
    """The ASGI lifespan protocol: startup before listening, shutdown after."""

    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.supported = True
        self.spoke = False
        self.started = False

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        message = "the app's lifespan ended early"
        try:
            await self.app(scope, self.inbox.get, self._send)
        except Exception as error:
            message = str(error) or type(error).__name__
            if self.spoke:
                log.exception("the app's lifespan failed")
            else:
                log.info("the app does not handle lifespan (%s); going on without", message)
        if not self.spoke:
            # An app that raises or returns before a word of lifespan does not do lifespan.
            self.supported = False
        await self.outbox.put({"type": "lifespan.ended", "message": message})

    async def _send(self, message: Message) -> None:
        self.spoke = True
        await self.outbox.put(message)

    async def startup(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())
        await self.inbox.put({"type": "lifespan.startup"})
        message = await self.outbox.get()
        if message["type"] == "lifespan.startup.complete":
            self.started = True
            return
        if message["type"] == "lifespan.ended" and not self.supported:
            return
        raise StartupFailed(message.get("message") or "the app's startup failed")

    async def shutdown(self) -> None:
        if not self.supported or self.task is None or self.task.done():
            return
        await self.inbox.put({"type": "lifespan.shutdown"})
        message = await self.outbox.get()
        if message["type"] != "lifespan.shutdown.complete":
            log.error("the app's shutdown failed: %s", message.get("message", ""))
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def abandon(self) -> None:
        """Undo a startup that the server could not follow up (or that was interrupted)."""
        if self.task is None or self.task.done():
            return
        if not self.started and not self.outbox.empty():
            # The startup's answer came but was never read (the wait was interrupted).
            self.started = self.outbox.get_nowait()["type"] == "lifespan.startup.complete"
        if self.started:
            await self.shutdown()
            return
        # Still starting: nothing is up to shut down in order, so stop it where it is.
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def serve(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    handle_signals: bool = True,
    on_ready: Callable[[], None] | None = None,
    **options: Any,
) -> None:
    """Run ``app`` until SIGINT or SIGTERM; raise ``StartupFailed`` if its startup fails.

    The signal handlers come first: a signal during the start gives the start up (see
    ``HTTPServer.start_unless_stopped``) instead of killing the process while the app
    holds what it took at startup, the rollout controller's lease among it. ``on_ready``
    is called once the app has started and the server accepts connections.
    """
    server = HTTPServer(app, host, port, **options)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
    try:
        for number in signals:
            loop.add_signal_handler(number, server.request_stop)
        if not await server.start_unless_stopped():
            log.info("stopped while starting: the start was given up and undone")
            return
        interrupted: BaseException | None = None
        try:
            if on_ready is not None:
                on_ready()
            log.info("listening on http://%s:%d", host, server.port)
            await server._stop_requested.wait()
        except BaseException as error:
            interrupted = error
        # Stopped by a signal or by anything else: the app's shutdown runs either way
        # (after the try, not in a finally block: see rollwise.compilation).
        await server.stop()
        if interrupted is not None:
            raise interrupted
    finally:
        for number in signals:
            loop.remove_signal_handler(number)


def limits_from(section: ServerSection) -> dict[str, Any]:
    """The ``HTTPServer`` options that a config's ``server:`` section sets."""
    return {
        "body_timeout_s": section.body_timeout_s,
        "drain_timeout_s": section.drain_timeout_s,
        "max_connections": section.max_connections,
        "max_pipelined": section.max_pipelined,
        "grace_s": section.shutdown_timeout_s,
    }


def run(app: ASGIApp, host: str, port: int, **options: Any) -> None:
    """Serve ``app`` on uvloop when it is installed, else on asyncio's own loop.

    ``options`` are ``HTTPServer``'s (``limits_from`` turns a config section into them).
    """
    try:
        import uvloop
    except ImportError:
        factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    else:
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(app, host, port, **options))


__all__ = ["HTTPServer", "StartupFailed", "limits_from", "run", "serve"]
