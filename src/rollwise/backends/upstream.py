"""Keep-alive HTTP/1.1 connection pool to one upstream origin, used by the ``http`` backend.

The gateway forwards every prediction for an ``http`` version through one of these pools, so
the client side of a proxied request has to be cheap. ``bench/upstream_clients.py`` measured
it against aiohttp, aiosonic and pyreqwest; this small client on asyncio protocols and
httptools' response parser spent the least CPU per request and is what rollwise ships.

What it does:

- at most ``max_connections`` sockets to the origin; a request that finds none idle waits
  for one (within its own timeout);
- idle connections are reused most-recently-used first, and dropped once idle longer than
  ``idle_timeout_s`` or as soon as the server closes them;
- responses framed by Content-Length, by chunked encoding or by the end of the connection;
- ``Connection: close`` and HTTP/1.0 answers are honoured: the socket is not reused;
- a request sent on a reused connection that turns out to be dead before any byte of the
  answer arrived is sent once more on a fresh connection; nothing is ever re-sent after part
  of a response has been read;
- one deadline per call covers waiting for a connection, connecting and the answer; when it
  passes, ``BackendTimeout`` is raised and the connection is closed (its stream is no longer
  in step). Any other failure raises ``BackendError``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import socket
from collections.abc import Mapping
from typing import NamedTuple, cast
from urllib.parse import urlsplit

import httptools

from rollwise.errors import BackendError, BackendTimeout

__all__ = ["UpstreamPool", "UpstreamResponse"]

# Bodies above this size are written after the head instead of being copied into one buffer.
_JOIN_LIMIT = 64 * 1024
_HEAD_CACHE_SIZE = 256
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_PATH = re.compile(r"/[\x21-\x7e]*\Z")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*\Z")
# Set by the pool itself; a caller's copy would corrupt the framing.
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_NO_BODY_STATUSES = frozenset({204, 304})


class UpstreamResponse(NamedTuple):
    """One complete upstream answer; unpacks as ``status, headers, body``."""

    status: int
    headers: list[tuple[bytes, bytes]]
    """Header fields in the order received, names as the server spelled them."""
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        wanted = name.lower().encode("latin-1")
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None


class _Stale(Exception):
    """The connection died before any byte of the answer: the request may be sent again."""


class _OutOfStep(Exception):
    """The server sent a response nobody was waiting for."""


class _Connection(asyncio.Protocol):
    """One socket to the upstream; carries one request at a time."""

    __slots__ = (
        "_body",
        "_framed",
        "_got_bytes",
        "_headers",
        "_headers_done",
        "_loop",
        "_parser",
        "_pool",
        "_status",
        "_waiter",
        "closed",
        "idle_since",
        "keep_alive",
        "lost",
        "served",
        "transport",
    )

    def __init__(self, pool: UpstreamPool, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._status = 0
        self._got_bytes = False
        self._headers_done = False
        self._framed = False
        self.transport: asyncio.Transport | None = None
        self.keep_alive = True
        self.closed = False
        self.served = 0
        self.idle_since = 0.0
        self.lost: asyncio.Future[None] = loop.create_future()

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are look-alikes of asyncio.Transport, not subclasses.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            # Bytes on an idle connection: whatever they are, the stream is out of step.
            self.abort()
            return
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(
                BackendError(f"upstream {self._pool.origin} sent an invalid HTTP response: {exc}")
            )
            self.abort()

    def eof_received(self) -> bool:
        # Returning False lets the transport close; connection_lost then settles any waiter.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.keep_alive = False
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            if not self._got_bytes:
                waiter.set_exception(_Stale())
            elif (
                self._headers_done
                and not self._framed
                and self._status not in _NO_BODY_STATUSES
                and self._status >= 200
            ):
                # Neither Content-Length nor chunked: the body ran until the server closed.
                waiter.set_result(UpstreamResponse(self._status, self._headers, self._joined()))
            else:
                waiter.set_exception(
                    BackendError(
                        f"upstream {self._pool.origin} closed the connection in the middle "
                        "of a response"
                    )
                )
        self._pool._forget(self)
        if not self.lost.done():
            self.lost.set_result(None)

    # -- httptools callbacks --------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        if len(name) in (14, 17):
            lowered = name.lower()
            if lowered == b"content-length" or lowered == b"transfer-encoding":
                self._framed = True

    def on_headers_complete(self) -> None:
        if self._waiter is None:
            raise _OutOfStep
        self._status = self._parser.get_status_code()
        self._headers_done = True
        self.keep_alive = self._parser.should_keep_alive() and self._status != 101

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._status
        if status < 200 and status != 101:
            # An interim answer (100 Continue, 103 Early Hints): the real one follows.
            self._headers = []
            self._body = []
            self._headers_done = False
            self._framed = False
            return
        waiter = self._waiter
        self._waiter = None
        self.served += 1
        if waiter is not None and not waiter.done():
            waiter.set_result(UpstreamResponse(status, self._headers, self._joined()))

    # -- used by the pool -----------------------------------------------------------------

    def send(self, head: bytes, body: bytes) -> asyncio.Future[UpstreamResponse]:
        transport = self.transport
        assert transport is not None
        waiter: asyncio.Future[UpstreamResponse] = self._loop.create_future()
        self._waiter = waiter
        self._headers = []
        self._body = []
        self._status = 0
        self._got_bytes = False
        self._headers_done = False
        self._framed = False
        if body:
            transport.write(head)
            transport.write(body)
        else:
            transport.write(head)
        return waiter

    def usable(self) -> bool:
        transport = self.transport
        return not self.closed and transport is not None and not transport.is_closing()

    def time_out(self, waiter: asyncio.Future[UpstreamResponse], timeout_s: float) -> None:
        if waiter.done():
            return
        if self._waiter is waiter:
            self._waiter = None
        waiter.set_exception(
            BackendTimeout(f"upstream {self._pool.origin} did not answer within {timeout_s:g} s")
        )
        self.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.keep_alive = False
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _joined(self) -> bytes:
        parts = self._body
        if not parts:
            return b""
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)


def _expire_waiter(
    waiter: asyncio.Future[_Connection | None], origin: str, timeout_s: float
) -> None:
    if not waiter.done():
        waiter.set_exception(
            BackendTimeout(f"no connection to upstream {origin} became free within {timeout_s:g} s")
        )


class UpstreamPool:
    """HTTP/1.1 keep-alive connections to one origin, ``http://host[:port]``.

    Bound to the event loop of its first request. ``headers`` are sent with every request.
    """

    def __init__(
        self,
        origin: str,
        *,
        max_connections: int = 64,
        timeout_s: float = 5.0,
        idle_timeout_s: float = 4.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        parts = urlsplit(origin)
        if parts.scheme != "http":
            raise ValueError(f"upstream origin must start with http://, got {origin!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ValueError(f"upstream origin must be http://host[:port] only, got {origin!r}")
        try:
            port = parts.port or 80
        except ValueError as exc:
            raise ValueError(f"upstream origin has a bad port: {origin!r}") from exc
        if not parts.hostname:
            raise ValueError(f"upstream origin has no host: {origin!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if not idle_timeout_s > 0:
            raise ValueError(f"idle_timeout_s must be positive, got {idle_timeout_s}")
        self.origin = f"http://{parts.netloc}"
        self.max_connections = max_connections
        self.timeout_s = float(timeout_s)
        self.idle_timeout_s = float(idle_timeout_s)
        self._host = parts.hostname
        self._port = port
        self._static = b"Host: " + parts.netloc.encode("idna") + b"\r\n" + _header_block(headers)
        self._heads: dict[tuple[str, str], bytes] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conns: set[_Connection] = set()
        self._idle: list[_Connection] = []
        # Sockets open or being opened; never above max_connections.
        self._open = 0
        # Futures of requests waiting for a connection. The result is a connection handed
        # over, or None: a slot was freed and counted for the waiter, which connects itself.
        self._waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        self._closed = False

    @property
    def open_connections(self) -> int:
        """Sockets currently open to the upstream, busy or idle."""
        return len(self._conns)

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    @property
    def closed(self) -> bool:
        return self._closed

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> UpstreamResponse:
        """Send one request and return the whole response, whatever its status.

        ``path`` is the request target (``/v2/models/m/infer``), ``headers`` extra fields for
        this request only. Raises ``BackendTimeout`` past ``timeout_s`` (default: the pool's)
        and ``BackendError`` when the upstream cannot be reached or answers garbage.
        """
        loop = self._loop
        if loop is None:
            loop = self._bind()
        timeout = self.timeout_s if timeout_s is None else timeout_s
        deadline = loop.time() + timeout
        head = self._heads.get((method, path)) if headers is None else None
        if head is None:
            head = self._head(method, path, headers)
        if body or method != "GET":
            size = len(body)
            if size <= _JOIN_LIMIT:
                head = b"%bContent-Length: %d\r\n\r\n%b" % (head, size, body)
                body = b""
            else:
                head = b"%bContent-Length: %d\r\n\r\n" % (head, size)
        else:
            head += b"\r\n"
        resent = False
        while True:
            if self._closed:
                raise BackendError(f"the connection pool to {self.origin} is closed")
            # A resend skips the idle connections: they may have died the same way.
            conn = self._take_idle(loop.time()) if self._idle and not resent else None
            if conn is None:
                conn = await self._acquire(deadline, timeout)
                if not conn.usable():
                    # Closed by the server while being handed over; its slot is free again.
                    continue
            reused = conn.served > 0
            waiter = conn.send(head, body)
            timer = loop.call_at(deadline, conn.time_out, waiter, timeout)
            try:
                response = await waiter
            except _Stale:
                # The socket died before any byte of an answer. On a reused connection the
                # usual cause is the server closing it while idle just as the request went
                # out, so the request gets one more try on a new connection.
                if reused and not resent and not self._closed:
                    resent = True
                    continue
                raise BackendError(
                    f"upstream {self.origin} closed the connection without answering "
                    f"{method} {path}"
                ) from None
            except BaseException:
                # Timed out, cancelled or failed mid-request: the answer may still come, so
                # the connection cannot carry another request.
                conn.abort()
                raise
            finally:
                timer.cancel()
            self._release(conn, loop)
            return response

    async def close(self) -> None:
        """Close every socket; requests in flight fail with ``BackendError``."""
        if self._closed:
            return
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(
                    BackendError(f"the connection pool to {self.origin} is closed")
                )
        self._idle.clear()
        conns = list(self._conns)
        for conn in conns:
            conn.close()
        if conns:
            await asyncio.wait([conn.lost for conn in conns], timeout=1.0)
            for conn in conns:
                if not conn.lost.done():
                    conn.abort()

    # -- internals --------------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        self._loop = asyncio.get_running_loop()
        return self._loop

    def _head(self, method: str, path: str, headers: Mapping[str, str] | None) -> bytes:
        """The request line and header fields, without Content-Length and the blank line."""
        if method == "HEAD":
            # Its answer announces a body that never comes; nothing in rollwise sends HEAD.
            raise ValueError("HEAD requests are not supported")
        if not _TOKEN.match(method):
            raise ValueError(f"bad HTTP method {method!r}")
        if not _PATH.match(path):
            raise ValueError(f"request path must be an absolute, encoded path, got {path!r}")
        head = b"%b %b HTTP/1.1\r\n%b%b" % (
            method.encode("ascii"),
            path.encode("ascii"),
            self._static,
            _header_block(headers),
        )
        if headers is None:
            if len(self._heads) >= _HEAD_CACHE_SIZE:
                self._heads.clear()
            self._heads[(method, path)] = head
        return head

    def _take_idle(self, now: float) -> _Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.usable():
                continue
            if now - conn.idle_since > self.idle_timeout_s:
                # Most recently used first, so every connection below this one is older.
                conn.close()
                for older in idle:
                    older.close()
                idle.clear()
                return None
            return conn
        return None

    async def _acquire(self, deadline: float, budget_s: float) -> _Connection:
        if self._open < self.max_connections:
            self._open += 1
            return await self._connect(deadline, budget_s)
        loop = self._loop
        assert loop is not None
        waiter: asyncio.Future[_Connection | None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_at(deadline, _expire_waiter, waiter, self.origin, budget_s)
        try:
            conn = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed a connection or a slot just as we were cancelled: pass it on.
                self._hand_back(waiter.result())
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        finally:
            timer.cancel()
        if conn is None:
            return await self._connect(deadline, budget_s)
        return conn

    async def _connect(self, deadline: float, budget_s: float) -> _Connection:
        """Open a socket in a slot already counted in ``_open``."""
        loop = self._loop
        assert loop is not None
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self, loop), self._host, self._port
                )
        except TimeoutError:
            self._slot_freed()
            raise BackendTimeout(
                f"could not connect to upstream {self.origin} within {budget_s:g} s"
            ) from None
        except OSError as exc:
            self._slot_freed()
            # asyncio words a refusal as "Connect call failed"; the errno says it plainly.
            if exc.errno and not isinstance(exc, socket.gaierror):
                reason = os.strerror(exc.errno)
            else:
                reason = exc.strerror or str(exc) or type(exc).__name__
            raise BackendError(f"cannot connect to upstream {self.origin}: {reason}") from exc
        except BaseException:
            self._slot_freed()
            raise
        if self._closed or conn.closed:
            # Its connection_lost found it unknown to the pool, so the slot is freed here.
            conn.abort()
            self._slot_freed()
            if self._closed:
                raise BackendError(f"the connection pool to {self.origin} is closed")
            raise BackendError(f"upstream {self.origin} closed the connection at once")
        self._conns.add(conn)
        return conn

    def _release(self, conn: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        if not conn.keep_alive or not conn.usable():
            conn.close()
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = loop.time()
        self._idle.append(conn)

    def _hand_back(self, got: _Connection | None) -> None:
        if got is None:
            self._slot_freed()
        else:
            self._release(got, cast(asyncio.AbstractEventLoop, self._loop))

    def _forget(self, conn: _Connection) -> None:
        """Called by a connection once its socket is gone."""
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)
        self._slot_freed()

    def _slot_freed(self) -> None:
        self._open -= 1
        if self._closed:
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                self._open += 1
                waiter.set_result(None)
                return


def _header_block(headers: Mapping[str, str] | None) -> bytes:
    if not headers:
        return b""
    lines = []
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ValueError(f"bad header name {name!r}")
        if name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is set by the connection pool itself")
        if not isinstance(value, str) or not _FIELD_VALUE.match(value):
            raise ValueError(f"bad value for header {name!r}: {value!r}")
        lines.append(f"{name}: {value}\r\n".encode("latin-1"))
    return b"".join(lines)
