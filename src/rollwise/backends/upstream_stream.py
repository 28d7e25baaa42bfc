"""The connection pool of ``rest`` versions: requests passed through as they come, answers
read as they arrive.

``StreamingPool`` is an ``UpstreamPool`` (same connections, limits, keep-alive and
warm-up) that adds ``open``: the request goes out with the header fields it is given and
the body at hand, then, if the client is still sending, the rest of the body as it arrives
(chunked when its length is not known), each write waiting for the socket to drain. The
call returns once the upstream's response head is in; its body is a ``BodyStream`` read at
the caller's pace. The connection goes back to the pool when the whole body has come.

Deadlines: ``timeout_s`` covers waiting for a connection, connecting and the upstream's
answer to a request already in hand; for a body still arriving, each drain of the socket
has ``timeout_s``, and the answer's ``timeout_s`` starts once the body is sent. Each piece
of the answer's body then has ``timeout_s`` to come (``BodyStream``).

A request whose body was all in hand is sent once more, as ``UpstreamPool.request`` does,
when a reused connection turns out dead before any byte of the answer; one whose body was
still arriving cannot be, and fails with ``BackendError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from rollwise.backends.upstream import UpstreamPool
from rollwise.backends.upstream_body import BodyStream
from rollwise.backends.upstream_conn import Connection, Stale, request_line
from rollwise.errors import BackendError, BackendTimeout

__all__ = ["BodyStream", "StreamingPool"]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
"""Methods whose request is framed (``Content-Length: 0``) even without a body: some
servers answer 411 to a POST without a length."""
_LAST_CHUNK = b"0\r\n\r\n"


class StreamingPool(UpstreamPool):
    """Keep-alive connections to one origin that pass requests and answers through."""

    async def open(
        self,
        method: str,
        target: str,
        fields: bytes,
        body: bytes,
        rest: AsyncIterator[bytes] | None = None,
        length: int | None = None,
        *,
        timeout_s: float | None = None,
    ) -> BodyStream:
        """Send a request and return its answer once the head is in.

        ``target`` is the request target (path and query, encoded), ``fields`` the header
        lines to send (``Name: value\\r\\n`` each, checked by the caller; the pool adds
        Host, its own headers and the framing), ``body`` the body at hand and ``rest``
        what follows of it, ``length`` the whole body's length when known.

        Raises ``BackendTimeout`` and ``BackendError`` as ``UpstreamPool.request`` does;
        an error raised by ``rest`` (the client's body refused) propagates after the
        connection is closed.
        """
        loop = self._loop
        if loop is None:
            loop = self._bind()
        timeout = self.timeout_s if timeout_s is None else timeout_s
        deadline = loop.time() + timeout
        chunked = False
        if rest is not None:
            if length is None:
                chunked = True
                framing = b"Transfer-Encoding: chunked\r\n"
            else:
                framing = b"Content-Length: %d\r\n" % length
            if body and chunked:
                body = b"%x\r\n%b\r\n" % (len(body), body)
        elif body or length is not None or method in _BODY_METHODS:
            framing = b"Content-Length: %d\r\n" % len(body)
        else:
            framing = b""
        head = request_line(method, target, streamed=True) + self._static + fields + framing
        head += b"\r\n"
        head_only = method == "HEAD"
        resent = False
        served_before = False
        while True:
            if self._closed:
                raise BackendError(f"the connection pool to {self.origin} is closed")
            conn = self._take_idle(loop.time()) if self._idle and not resent else None
            if conn is None:
                conn = await self._wait(loop, deadline, timeout, served_before)
                if not conn.usable():
                    served_before = True
                    continue
            reused = conn.served > 0
            stream = BodyStream(loop, self.origin, timeout, head_only=head_only)
            release = _Release(self, conn, loop, sent=rest is None)
            waiter = conn.send_streaming(head, body, stream, release)
            if rest is not None:
                release.sent = await self._send_rest(conn, rest, waiter, chunked, timeout)
                deadline = loop.time() + timeout
            timer = loop.call_at(deadline, conn.time_out, waiter, timeout)
            stale = False
            try:
                await waiter
            except Stale:
                if not reused or resent or rest is not None or self._closed:
                    raise BackendError(
                        f"upstream {self.origin} closed the connection without answering "
                        f"{method} {target}"
                    ) from None
                stale = True
            except BaseException:
                conn.abort()
                raise
            finally:
                timer.cancel()
            if stale:
                resent = served_before = True
                continue
            if conn.opening:
                conn.opening = False
                self._opening -= 1
                self._grow()
            return stream

    async def _send_rest(
        self,
        conn: Connection,
        rest: AsyncIterator[bytes],
        answered: asyncio.Future[Any],
        chunked: bool,
        timeout_s: float,
    ) -> bool:
        """Write the rest of the body as it comes; True when all of it went out, False
        when the upstream answered (or went away) first."""
        failure: BaseException | None = None
        whole = False
        try:
            async for chunk in rest:
                if answered.done() or not conn.usable():
                    break
                if chunk:
                    conn.write_body(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                drain = conn.drained()
                if drain is not None:
                    async with asyncio.timeout(timeout_s):
                        await drain
            else:
                whole = True
                if chunked:
                    conn.write_body(_LAST_CHUNK)
        except TimeoutError:
            failure = BackendTimeout(
                f"upstream {self.origin} took no more of the request body within {timeout_s:g} s"
            )
        except BaseException as error:
            failure = error
        if failure is not None:
            # Nobody waits for this request's answer any more: settled here, so that the
            # aborted connection leaves no exception unretrieved on it.
            answered.cancel()
            conn.abort()
            raise failure
        return whole


class _Release:
    """What a streamed answer calls once its whole body is in: the pool takes its
    connection back (a class, not a closure: mypyc compiles it to a plain call)."""

    __slots__ = ("conn", "loop", "pool", "sent")

    def __init__(
        self,
        pool: StreamingPool,
        conn: Connection,
        loop: asyncio.AbstractEventLoop,
        *,
        sent: bool,
    ) -> None:
        self.pool = pool
        self.conn = conn
        self.loop = loop
        self.sent = sent
        """The whole request body went out. Until it has, the connection is not used
        again: an upstream that answered early has not read the rest, which it would
        take for the next request."""

    def __call__(self) -> None:
        if not self.sent:
            self.conn.keep_alive = False
        self.pool._release(self.conn, self.loop)
