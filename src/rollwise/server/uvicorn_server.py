"""Serves the gateway's ASGI app on uvicorn (``serve --server uvicorn``), stopping as the
built-in server does. Imported only when uvicorn serves."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

import uvicorn

from rollwise.errors import RollwiseError


class _StoppableApp(Protocol):
    """An ASGI app told the moment a stop begins (``RollwiseApp``)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...

    def begin_shutdown(self) -> None: ...


_UVICORN_LINGER_S = 0.5
"""A stopping uvicorn server stops accepting this long before it closes idle connections."""


_UVICORN_OPTIONS: dict[str, Any] = {
    "loop": "auto",
    "http": "auto",
    "lifespan": "on",
    "access_log": False,
    "server_header": False,
    "date_header": False,
    # The data plane reads no client address, so X-Forwarded-* needs no parsing.
    "proxy_headers": False,
}


class _Server(uvicorn.Server):
    """``uvicorn.Server`` that tells the app at the signal and says when it is ready."""

    def __init__(
        self,
        config: uvicorn.Config,
        app: _StoppableApp,
        on_ready: Callable[[], None] | None,
    ) -> None:
        super().__init__(config)
        self.app = app
        self.on_ready = on_ready
        self.loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn tells the app only after its drain (the lifespan shutdown): readiness
        # would answer 200 and the controller hold its lease while requests finish.
        # This runs in a signal handler, between two steps of the loop: through the
        # loop, not straight away.
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.app.begin_shutdown)
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.on_ready is not None:
            self.on_ready()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Other workers take the connections still queued on a shared socket; those
        # this one accepted a moment ago get their request read before uvicorn
        # closes every idle connection (else they would be reset unanswered).
        for listener in self.servers:
            listener.close()
        await asyncio.sleep(_UVICORN_LINGER_S)
        await super().shutdown(sockets=sockets)


def run_uvicorn(
    app: _StoppableApp,
    host: str,
    port: int,
    *,
    log_level: str,
    sock: socket.socket | None,
    on_ready: Callable[[], None] | None,
    shutdown_timeout_s: float,
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM; ``RollwiseError`` if it failed to start."""
    options = {**_UVICORN_OPTIONS, "timeout_graceful_shutdown": shutdown_timeout_s}
    server = _Server(
        uvicorn.Config(app, host=host, port=port, log_level=log_level, **options), app, on_ready
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=None if sock is None else [sock])
    if not server.started:
        raise RollwiseError("the gateway failed to start (see the log above)")
