"""One keep-alive HTTP/1.1 connection to an upstream, and the bytes of a request head.

``UpstreamPool`` (``rollwise.backends.upstream``) owns these connections and decides which
request goes on which; this module only speaks the protocol on one socket, one request at
a time: responses framed by Content-Length, by chunked encoding or by the end of the
connection, interim 1xx answers skipped, ``Connection: close`` and HTTP/1.0 answers marked
as not reusable. Anything unexpected on the wire (bytes nobody asked for, a parse error)
closes the connection, since its stream is no longer in step.

An answer is either gathered whole (``send``: the ``http`` backend's inference calls) or
streamed (``send_streaming``: the ``rest`` backend's pass-through): then the waiter gets the
head alone, as soon as it is parsed, and the body goes to a ``BodyStream`` piece by piece.
A request body sent after its head (``write_body``) waits for the socket's buffer to drain
(``drained``), so a slow upstream holds back the client that sends it.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import NamedTuple, cast

import httptools

from rollwise.backends.upstream_body import BodyStream
from rollwise.errors import BackendError, BackendTimeout

__all__ = [
    "Connection",
    "Stale",
    "UpstreamResponse",
    "connect_error",
    "header_block",
    "request_line",
]

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


class Stale(Exception):
    """The connection died before any byte of the answer: the request may be sent again."""


class _OutOfStep(Exception):
    """The server sent a response nobody was waiting for."""


class Connection(asyncio.Protocol):
    """One socket to the upstream; carries one request at a time.

    ``on_lost`` is called once, when the socket is gone. ``opening`` and ``idle_since`` are
    the pool's bookkeeping, kept here to spare it a dictionary per connection.
    """

    __slots__ = (
        "_body",
        "_drain",
        "_framed",
        "_got_bytes",
        "_headers",
        "_headers_done",
        "_loop",
        "_on_lost",
        "_origin",
        "_parser",
        "_status",
        "_stream",
        "_waiter",
        "_write_paused",
        "closed",
        "idle_since",
        "keep_alive",
        "lost",
        "opening",
        "served",
        "transport",
    )

    def __init__(
        self,
        origin: str,
        loop: asyncio.AbstractEventLoop,
        on_lost: Callable[[Connection], None],
    ) -> None:
        self._origin = origin
        self._loop = loop
        self._on_lost = on_lost
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._status = 0
        self._got_bytes = False
        self._headers_done = False
        self._framed = False
        self._stream: BodyStream | None = None
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None
        self.keep_alive = True
        self.closed = False
        self.served = 0
        self.idle_since = 0.0
        self.opening = False
        self.lost: asyncio.Future[None] = loop.create_future()

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are look-alikes of asyncio.Transport, not subclasses.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if (waiter is None or waiter.done()) and self._stream is None:
            # Bytes on an idle connection: whatever they are, the stream is out of step.
            self.abort()
            return
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(
                BackendError(f"upstream {self._origin} sent an invalid HTTP response: {exc}")
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
        drain = self._drain
        self._drain = None
        if drain is not None and not drain.done():
            drain.set_result(None)
        stream = self._stream
        self._stream = None
        if stream is not None:
            if self._headers_done and not self._framed and self._status not in _NO_BODY_STATUSES:
                # Streamed, its head handed over: the body ran until the server closed.
                stream.finish()
            else:
                stream.fail(
                    BackendError(
                        f"upstream {self._origin} closed the connection in the middle of a response"
                    )
                )
        if waiter is not None and not waiter.done():
            if not self._got_bytes:
                waiter.set_exception(Stale())
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
                        f"upstream {self._origin} closed the connection in the middle of a response"
                    )
                )
        self._on_lost(self)
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
        waiter = self._waiter
        if waiter is None:
            raise _OutOfStep
        status = self._status = self._parser.get_status_code()
        self._headers_done = True
        self.keep_alive = self._parser.should_keep_alive() and status != 101
        stream = self._stream
        if stream is not None and (status >= 200 or status == 101):
            # Streamed: the head goes to the waiter now, the body to the stream.
            self._waiter = None
            stream.status = status
            stream.headers = self._headers
            if status == 101:
                # No protocol switch is offered; whatever follows is not HTTP.
                self.keep_alive = False
            if not waiter.done():
                waiter.set_result(UpstreamResponse(status, self._headers, b""))
            if stream.head_only or status == 101:
                # An answer to HEAD has no body, whatever its head announces; the parser
                # does not know the request's method and would wait for one, so the
                # connection is not used again.
                self.keep_alive = False
                self._stream = None
                stream.finish()

    def on_body(self, body: bytes) -> None:
        stream = self._stream
        if stream is not None:
            stream.feed(body)
        else:
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
        self.served += 1
        stream = self._stream
        if stream is not None:
            self._stream = None
            stream.finish()
            return
        waiter = self._waiter
        self._waiter = None
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
        transport.write(head)
        if body:
            transport.write(body)
        return waiter

    def send_streaming(
        self, head: bytes, body: bytes, stream: BodyStream, on_end: Callable[[], None]
    ) -> asyncio.Future[UpstreamResponse]:
        """Send a request (its head and the body at hand; ``write_body`` may follow) whose
        answer's head comes to the waiter without a body, and its body to ``stream``;
        ``on_end`` is called once the whole body is in."""
        waiter = self.send(head, body)
        self._stream = stream
        stream.attach(self.transport, on_end)
        return waiter

    def write_body(self, data: bytes) -> None:
        """More of the request body, after ``send_streaming``."""
        transport = self.transport
        if transport is not None and not self.closed:
            transport.write(data)

    def drained(self) -> asyncio.Future[None] | None:
        """A future set once the socket's write buffer has drained, or None when it has."""
        if not self._write_paused or self.closed:
            return None
        drain = self._drain
        if drain is None:
            drain = self._drain = self._loop.create_future()
        return drain

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain
        if drain is not None:
            self._drain = None
            if not drain.done():
                drain.set_result(None)

    def usable(self) -> bool:
        transport = self.transport
        return not self.closed and transport is not None and not transport.is_closing()

    def time_out(self, waiter: asyncio.Future[UpstreamResponse], timeout_s: float) -> None:
        if waiter.done():
            return
        if self._waiter is waiter:
            self._waiter = None
        waiter.set_exception(
            BackendTimeout(f"upstream {self._origin} did not answer within {timeout_s:g} s")
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
        stream = self._stream
        self._stream = None
        if stream is not None:
            stream.fail(exc)

    def _joined(self) -> bytes:
        parts = self._body
        if not parts:
            return b""
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)


def connect_error(origin: str, timeout_s: float, exc: OSError) -> BackendError:
    """What a failed connect to ``origin`` tells the request that waited for it."""
    if isinstance(exc, TimeoutError):
        return BackendTimeout(f"could not connect to upstream {origin} within {timeout_s:g} s")
    # asyncio words a refusal as "Connect call failed"; the errno says it plainly.
    if isinstance(exc, ssl.SSLError):
        # Its errno is the TLS library's, not the system's: its own words say more.
        reason = getattr(exc, "verify_message", None) or exc.reason or str(exc)
        return BackendError(f"cannot connect to upstream {origin}: TLS: {reason}")
    if exc.errno and not isinstance(exc, socket.gaierror):
        reason = os.strerror(exc.errno)
    else:
        reason = exc.strerror or str(exc) or type(exc).__name__
    return BackendError(f"cannot connect to upstream {origin}: {reason}")


# -- request heads -------------------------------------------------------------------------------


def request_line(method: str, path: str, *, streamed: bool = False) -> bytes:
    """``METHOD path HTTP/1.1`` and its line end; ``ValueError`` for what rollwise never sends.

    HEAD only for a ``streamed`` exchange: its answer announces a body that never comes,
    which only ``send_streaming`` knows to expect.
    """
    if method == "HEAD" and not streamed:
        raise ValueError("HEAD requests are only sent streamed")
    if not _TOKEN.match(method):
        raise ValueError(f"bad HTTP method {method!r}")
    if not _PATH.match(path):
        raise ValueError(f"request path must be an absolute, encoded path, got {path!r}")
    return b"%b %b HTTP/1.1\r\n" % (method.encode("ascii"), path.encode("ascii"))


def header_block(headers: Mapping[str, str] | None) -> bytes:
    """Header lines for ``headers``; ``ValueError`` for a bad name or value, or a field the
    pool sets itself."""
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
