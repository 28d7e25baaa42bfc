"""An upstream's answer read as it arrives: the body of a streamed exchange.

``StreamingPool.open`` (``rollwise.backends.upstream_stream``) hands one of these out once
the upstream's response head has come; the connection's parser feeds it the body's
pieces (``feed``), and its end (``finish``) or failure (``fail``). Whoever forwards the
answer reads it piece by piece (``read``), at its own pace: past ``HIGH_WATER_BYTES``
unread, the connection stops reading from the upstream's socket until it is read, so a
slow client holds at most that much of a large answer in memory, and the upstream waits.

Every read has a deadline (``timeout_s`` for the next piece): an upstream that stops
sending half-way is cut off with ``BackendTimeout``, never waited for without end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from rollwise.errors import BackendError, BackendTimeout

__all__ = ["HIGH_WATER_BYTES", "BodyStream"]

HIGH_WATER_BYTES = 256 * 1024
"""Unread body bytes held before the upstream's socket is no longer read."""


class BodyStream:
    """The body of one upstream answer, from the connection's parser to its reader."""

    __slots__ = (
        "_chunks",
        "_ended",
        "_error",
        "_loop",
        "_on_end",
        "_origin",
        "_paused",
        "_size",
        "_timeout_s",
        "_transport",
        "_waiter",
        "head_only",
        "headers",
        "received",
        "status",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        origin: str,
        timeout_s: float,
        *,
        head_only: bool = False,
    ) -> None:
        self._loop = loop
        self._origin = origin
        self._timeout_s = timeout_s
        self.head_only = head_only
        """An answer to HEAD: it ends with its head, whatever its Content-Length says."""
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.received = 0
        """Body bytes the upstream has sent so far."""
        self._chunks: list[bytes] = []
        self._size = 0
        self._ended = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        # Read as Any: uvloop's transports are look-alikes of asyncio's, not subclasses.
        self._transport: Any = None
        self._on_end: Callable[[], None] | None = None

    def attach(self, transport: Any, on_end: Callable[[], None]) -> None:
        """The socket it is read from, and what to call once the whole answer is in (the
        pool takes the connection back)."""
        self._transport = transport
        self._on_end = on_end

    @property
    def ended(self) -> bool:
        """The whole body has been received (it may not all have been read yet)."""
        return self._ended

    # -- fed by the connection ------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        self.received += len(chunk)
        if self._size > HIGH_WATER_BYTES and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def finish(self) -> None:
        """The whole body is in: the connection may carry the next request."""
        if self._ended or self._error is not None:
            return
        self._ended = True
        if self._paused:
            # Reading resumes before the pool hands the connection on: its next answer
            # must be read, whatever is left unread here.
            self._paused = False
            self._transport.resume_reading()
        self._wake()
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end()

    def fail(self, error: BaseException) -> None:
        if self._ended or self._error is not None:
            return
        self._error = error
        self._on_end = None
        self._wake()

    # -- read by the forwarder --------------------------------------------------------------

    async def read(self) -> bytes:
        """The body bytes received since the last read; b"" once the body has ended.

        Raises ``BackendError`` when the upstream closed the connection in the middle of
        the body, ``BackendTimeout`` when it sent nothing for ``timeout_s``.
        """
        while True:
            chunks = self._chunks
            if chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self._chunks = []
                self._size = 0
                if self._paused:
                    self._paused = False
                    self._transport.resume_reading()
                return data
            if self._error is not None:
                raise self._error
            if self._ended:
                return b""
            waiter = self._loop.create_future()
            self._waiter = waiter
            timer = self._loop.call_later(self._timeout_s, self._late, waiter)
            try:
                await waiter
            finally:
                timer.cancel()

    async def read_all(self, limit_bytes: int) -> bytes | None:
        """The rest of the body, or None when it is longer than ``limit_bytes`` (the
        connection is then closed: the rest is not read)."""
        parts: list[bytes] = []
        size = 0
        while True:
            chunk = await self.read()
            if not chunk:
                return b"".join(parts)
            size += len(chunk)
            if size > limit_bytes:
                self.close()
                return None
            parts.append(chunk)

    def close(self) -> None:
        """Give the answer up: unless the whole body came, the connection is aborted (its
        stream is no longer in step), so the upstream stops sending."""
        if self._ended or self._error is not None:
            return
        self._on_end = None
        self._chunks = []
        self._error = BackendError(f"the answer from upstream {self._origin} was given up")
        if self._transport is not None:
            self._transport.abort()

    # -- internals -------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _late(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done() or self._ended:
            return
        self.fail(
            BackendTimeout(
                f"upstream {self._origin} sent no more of its answer within {self._timeout_s:g} s"
            )
        )
        if self._transport is not None:
            self._transport.abort()
