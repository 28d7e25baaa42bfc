"""Keep-alive HTTP/1.1 connection pool to one upstream origin, used by the ``http`` backend.

The gateway forwards every prediction for an ``http`` version through one of these pools, so
the client side of a proxied request has to be cheap. ``bench/upstream_clients.py`` measured
it against aiohttp, aiosonic and pyreqwest; this small client on asyncio protocols and
httptools' response parser (``rollwise.backends.upstream_conn``) spent the least CPU per
request and is what rollwise ships.

How requests share connections:

- a request takes an idle connection when there is one, most recently used first;
  otherwise it joins a queue, served in arrival order by whichever comes first: a
  connection another request has just finished with, or a new one;
- new connections are opened for the queue, never more than ``max_connections`` sockets in
  all, and never more than ``max_connecting`` *opening* at once. A connection is opening
  from the connect call until the upstream answers the first request sent on it (or until
  it joins the idle ones, when nobody was left waiting for it): a finished TCP handshake
  only means the kernel queued the connection, and a busy single-threaded model server
  takes up about one new connection per turn of its event loop. Connections opened while
  it is busy wait in its accept queue, each holding a request, and each one more makes the
  next wait longer: after an idle spell the pool grew from 64 to about 90 connections while
  the server was saturated, and the first requests on the late ones waited up to 350 ms
  where the others were answered within 32 ms (``bench/upstream_burst.py``). With the
  cap, requests wait for a connection to come free instead;
- ``min_idle`` connections are kept open while the pool idles, and replaced before they
  have idled ``idle_timeout_s``, so that a burst after a quiet time finds them ready. Other
  idle connections are closed once idle ``idle_timeout_s``, or as soon as the server closes
  them;
- a request sent on a reused connection that turns out to be dead before any byte of the
  answer arrived is sent once more, on a connection that was not idle (an idle one may have
  died the same way); nothing is ever re-sent after part of a response has been read;
- one deadline per call covers waiting for a connection, connecting and the answer; when it
  passes, ``BackendTimeout`` is raised and the connection is closed (its stream is no longer
  in step). Any other failure raises ``BackendError``; when a connection cannot be opened,
  the first request in line gets the error.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from rollwise.backends.upstream_conn import (
    Connection,
    Stale,
    UpstreamResponse,
    connect_error,
    header_block,
    request_line,
)
from rollwise.errors import BackendError, BackendTimeout

__all__ = ["UpstreamPool", "UpstreamResponse"]

# Bodies above this size are written after the head instead of being copied into one buffer.
_JOIN_LIMIT = 64 * 1024
_HEAD_CACHE_SIZE = 256
_DEFAULT_MAX_CONNECTING = 4
# Warm connections are looked after this many times per idle_timeout_s, and replaced once
# idle for all but one of those periods, so none of them ever reaches idle_timeout_s.
_WARM_CHECKS_PER_IDLE_TIMEOUT = 4


class UpstreamPool:
    """HTTP/1.1 keep-alive connections to one origin, ``http://host[:port]``, or
    ``https://host[:port]`` with a ``tls`` context (the ``rest`` backend's).

    Bound to the event loop of its first request. ``headers`` are sent with every request.
    ``max_connecting`` defaults to 4, or ``max_connections`` when that is smaller.
    """

    def __init__(
        self,
        origin: str,
        *,
        max_connections: int = 64,
        max_connecting: int | None = None,
        min_idle: int = 0,
        timeout_s: float = 5.0,
        idle_timeout_s: float = 4.0,
        headers: Mapping[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(origin)
        if parts.scheme == "https" and tls is None:
            raise ValueError(f"an https:// upstream needs a TLS context, got {origin!r}")
        scheme = "https" if tls is not None else "http"
        if parts.scheme != scheme:
            raise ValueError(f"upstream origin must start with {scheme}://, got {origin!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ValueError(f"upstream origin must be http://host[:port] only, got {origin!r}")
        try:
            port = parts.port or (443 if tls is not None else 80)
        except ValueError as exc:
            raise ValueError(f"upstream origin has a bad port: {origin!r}") from exc
        if not parts.hostname:
            raise ValueError(f"upstream origin has no host: {origin!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        if max_connecting is None:
            max_connecting = min(_DEFAULT_MAX_CONNECTING, max_connections)
        if not 1 <= max_connecting <= max_connections:
            raise ValueError(
                f"max_connecting must be from 1 to max_connections ({max_connections}), "
                f"got {max_connecting}"
            )
        if not 0 <= min_idle <= max_connections:
            raise ValueError(
                f"min_idle must be from 0 to max_connections ({max_connections}), got {min_idle}"
            )
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if not idle_timeout_s > 0:
            raise ValueError(f"idle_timeout_s must be positive, got {idle_timeout_s}")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._tls = tls
        self.max_connections = max_connections
        self.max_connecting = max_connecting
        self.min_idle = min_idle
        self.timeout_s = float(timeout_s)
        self.idle_timeout_s = float(idle_timeout_s)
        self._host = parts.hostname
        self._port = port
        self._static = b"Host: " + parts.netloc.encode("idna") + b"\r\n" + header_block(headers)
        self._heads: dict[tuple[str, str], bytes] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # Connected sockets, busy or idle, including those closing but not yet gone.
        self._conns: set[Connection] = set()
        self._idle: list[Connection] = []
        # Connect calls under way, and those plus the connections whose first answer has
        # not come yet (``Connection.opening``): the second is what max_connecting caps.
        self._connecting = 0
        self._opening = 0
        # Requests waiting for a connection, first come first served.
        self._waiters: collections.deque[asyncio.Future[Connection]] = collections.deque()
        self._connects: set[asyncio.Task[None]] = set()
        self._warm_timer: asyncio.TimerHandle | None = None
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
        # Once a request has been handed a connection, it keeps its place at the head of
        # the line if it has to wait again.
        served_before = False
        while True:
            if self._closed:
                raise BackendError(f"the connection pool to {self.origin} is closed")
            # A resend skips the idle connections: they may have died the same way.
            conn = self._take_idle(loop.time()) if self._idle and not resent else None
            if conn is None:
                conn = await self._wait(loop, deadline, timeout, served_before)
                if not conn.usable():
                    # Closed by the server while being handed over.
                    served_before = True
                    continue
            reused = conn.served > 0
            waiter = conn.send(head, body)
            timer = loop.call_at(deadline, conn.time_out, waiter, timeout)
            # A flag, not a ``continue`` in the handler: compiled, a loop cannot be
            # continued from inside a try with a finally.
            stale = False
            try:
                response = await waiter
            except Stale:
                # The socket died before any byte of an answer. On a reused connection the
                # usual cause is the server closing it while idle just as the request went
                # out, so the request gets one more try on another connection.
                if not reused or resent or self._closed:
                    raise BackendError(
                        f"upstream {self.origin} closed the connection without answering "
                        f"{method} {path}"
                    ) from None
                stale = True
            except BaseException:
                # Timed out, cancelled or failed mid-request: the answer may still come, so
                # the connection cannot carry another request.
                conn.abort()
                raise
            finally:
                timer.cancel()
            if stale:
                resent = served_before = True
                continue
            if conn.opening:
                # Its first answer: the upstream has taken the connection up, so another
                # may be opened for the requests still in line.
                conn.opening = False
                self._opening -= 1
                self._release(conn, loop)
                self._grow()
            else:
                self._release(conn, loop)
            return response

    async def close(self) -> None:
        """Close every socket; requests in flight fail with ``BackendError``."""
        if self._closed:
            return
        self._closed = True
        if self._warm_timer is not None:
            self._warm_timer.cancel()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(
                    BackendError(f"the connection pool to {self.origin} is closed")
                )
        connects = list(self._connects)
        for task in connects:
            task.cancel()
        if connects:
            await asyncio.wait(connects, timeout=1.0)
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
        loop = self._loop = asyncio.get_running_loop()
        if self.min_idle:
            self._warm_timer = loop.call_at(loop.time(), self._keep_warm)
        return loop

    def _head(self, method: str, path: str, headers: Mapping[str, str] | None) -> bytes:
        """The request line and header fields, without Content-Length and the blank line."""
        head = request_line(method, path) + self._static + header_block(headers)
        if headers is None:
            if len(self._heads) >= _HEAD_CACHE_SIZE:
                self._heads.clear()
            self._heads[(method, path)] = head
        return head

    def _take_idle(self, now: float) -> Connection | None:
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

    async def _wait(
        self,
        loop: asyncio.AbstractEventLoop,
        deadline: float,
        budget_s: float,
        first: bool,
    ) -> Connection:
        """A connection handed over from the queue; ``first`` joins it at the head."""
        waiter: asyncio.Future[Connection] = loop.create_future()
        if first:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        self._grow()
        timer = loop.call_at(deadline, self._expire, waiter, budget_s)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed a connection just as we were cancelled: pass it on.
                self._release(waiter.result(), loop)
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        finally:
            timer.cancel()

    def _expire(self, waiter: asyncio.Future[Connection], budget_s: float) -> None:
        if waiter.done():
            return
        if self._conns:
            message = f"no connection to upstream {self.origin} became free within {budget_s:g} s"
        else:
            message = f"could not connect to upstream {self.origin} within {budget_s:g} s"
        waiter.set_exception(BackendTimeout(message))

    def _grow(self) -> None:
        """Open connections for the requests in line, as far as the limits allow."""
        while (
            len(self._waiters) > self._connecting
            and self._opening < self.max_connecting
            and not self._closed
        ):
            if len(self._conns) + self._connecting >= self.max_connections:
                if self._idle:
                    # Only a resend waits while connections idle; make room for a new one.
                    self._idle.pop(0).close()
                return
            self._connect_soon()

    def _connect_soon(self) -> None:
        loop = self._loop
        assert loop is not None
        self._connecting += 1
        self._opening += 1
        task = loop.create_task(self._connect(loop))
        self._connects.add(task)
        task.add_done_callback(self._connects.discard)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open one connection, counted in ``_connecting`` and ``_opening``, for whoever is
        first in line when it is ready (or for the idle list)."""
        try:
            async with asyncio.timeout(self.timeout_s):
                _, conn = await loop.create_connection(
                    lambda: Connection(self.origin, loop, self._forget),
                    self._host,
                    self._port,
                    ssl=self._tls,
                )
        except (TimeoutError, OSError) as exc:
            self._connecting -= 1
            self._opening -= 1
            self._fail_first(connect_error(self.origin, self.timeout_s, exc))
            # The next request in line gets its own attempt, and its own error.
            self._grow()
            return
        except BaseException:
            self._connecting -= 1
            self._opening -= 1
            raise
        self._connecting -= 1
        if self._closed or conn.closed:
            # Its connection_lost found it unknown to the pool: nothing else counts it down.
            conn.abort()
            self._opening -= 1
            if not self._closed:
                self._fail_first(
                    BackendError(f"upstream {self.origin} closed the connection at once")
                )
                self._grow()
            return
        self._conns.add(conn)
        conn.opening = True
        self._release(conn, loop)
        self._grow()

    def _fail_first(self, error: BackendError) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
                return

    def _release(self, conn: Connection, loop: asyncio.AbstractEventLoop) -> None:
        """Hand ``conn`` to the first request in line, or put it with the idle ones."""
        if not conn.keep_alive or not conn.usable():
            conn.close()
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn.opening:
            # Nobody waits on it: it holds no request up, so it no longer counts as opening.
            conn.opening = False
            self._opening -= 1
        conn.idle_since = loop.time()
        self._idle.append(conn)

    def _forget(self, conn: Connection) -> None:
        """Called by a connection once its socket is gone."""
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        if conn.opening:
            conn.opening = False
            self._opening -= 1
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)
        self._grow()

    def _keep_warm(self) -> None:
        """Replace idle connections before they expire, and open up to ``min_idle``."""
        loop = self._loop
        assert loop is not None
        if self._closed:
            return
        period_s = self.idle_timeout_s / _WARM_CHECKS_PER_IDLE_TIMEOUT
        oldest_s = self.idle_timeout_s - period_s
        now = loop.time()
        idle = self._idle
        expired = 0
        # Oldest first; none is kept long enough for the server's keep-alive to end it.
        while expired < len(idle) and now - idle[expired].idle_since >= oldest_s:
            idle[expired].close()
            expired += 1
        del idle[:expired]
        alive = sum(1 for conn in self._conns if conn.usable())
        # A failed top-up is tried again at the next check, not at once: the upstream may
        # be down, and this runs whether or not anyone sends requests.
        while (
            alive + self._connecting < self.min_idle
            and self._opening < self.max_connecting
            and len(self._conns) + self._connecting < self.max_connections
        ):
            self._connect_soon()
        self._warm_timer = loop.call_at(now + period_s, self._keep_warm)
