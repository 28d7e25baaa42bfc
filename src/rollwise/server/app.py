"""Builds the gateway's ASGI application and serves it with rollwise's HTTP server or uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from rollwise.config import GatewayConfig, is_loopback
from rollwise.errors import ConfigError, RollwiseError
from rollwise.runtime.gateway import Gateway
from rollwise.server.auth import Authenticator
from rollwise.server.control import build_control_app
from rollwise.server.dataplane import DataPlane, Receive, Scope, Send
from rollwise.server.gc_policy import settle_heap

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("rollwise.server")


class RollwiseApp:
    """The ASGI app: runs the gateway's lifecycle and dispatches to the data plane."""

    def __init__(self, gateway: Gateway, auth: Authenticator, host: str | None = None) -> None:
        self.gateway = gateway
        # ``host``: where the server listens; the control API's guard answers to it.
        self.dataplane = DataPlane(gateway, auth, build_control_app(gateway, auth, host))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.dataplane(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.gateway.start()
                except asyncio.CancelledError:
                    # The server gave the start up (a signal came first): undo what it
                    # did, so that this replica leaves the fleet instead of lingering.
                    await self.gateway.stop()
                    raise
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                # Models, imports and config are loaded for good: move them out of the
                # collector's sight, so that its full passes only walk what requests make.
                settle_heap()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # After the server's drain (``begin_shutdown`` came at its start).
                await self.gateway.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def begin_shutdown(self) -> None:
        """Called the moment a stop begins, before the requests in flight are drained
        (by the built-in server, and by ``_Uvicorn`` at the signal): readiness fails and
        the controller lets its lease go."""
        self.gateway.begin_stop()


def check_exposure(host: str, insecure_dev: bool, has_tokens: bool) -> None:
    """Refuse ``--insecure-dev`` off loopback; warn when no token can use the control API."""
    if insecure_dev and not is_loopback(host):
        raise ConfigError(
            "--insecure-dev only works on a loopback address; "
            f"refusing to serve {host!r} without tokens"
        )
    if not insecure_dev and not has_tokens:
        log.warning(
            "no tokens configured: the control API will refuse every call "
            "(set auth.tokens or ROLLWISE_TOKENS, or use --insecure-dev on loopback)"
        )


def create_app(
    config: GatewayConfig,
    *,
    insecure_dev: bool = False,
    host: str | None = None,
    **gateway_options: Any,
) -> RollwiseApp:
    host = host or config.server.host
    check_exposure(host, insecure_dev, bool(config.tokens))
    auth = Authenticator(config.tokens, insecure_dev=insecure_dev)
    return RollwiseApp(Gateway(config, **gateway_options), auth, host)


def run(
    config: GatewayConfig,
    *,
    host: str,
    port: int,
    insecure_dev: bool,
    log_level: str = "info",
    server: str = "rollwise",
    sock: socket.socket | None = None,
    on_ready: Callable[[str], None] | None = None,
    on_hangup: Callable[[], None] | None = None,
) -> None:
    """Serve the gateway until SIGINT or SIGTERM on ``server``: ``rollwise`` or ``uvicorn``.

    ``sock``: a listening socket to serve on instead of binding ``host:port`` (a worker
    of ``serve --workers`` gets its supervisor's); ``on_ready``: called in the event loop,
    with this replica's id, once the gateway has started and connections are accepted;
    ``on_hangup``: what SIGHUP and a config reload do instead of reloading this process
    alone (a worker asks its supervisor for a rolling restart; see ``Gateway``).
    """
    if server not in ("rollwise", "uvicorn"):
        raise ConfigError(f"unknown HTTP server {server!r}: choose rollwise or uvicorn")
    app = create_app(config, insecure_dev=insecure_dev, host=host, on_hangup=on_hangup)
    ready = None if on_ready is None else functools.partial(on_ready, app.gateway.replica)
    if server == "rollwise":
        from rollwise.server import http11

        try:
            http11.run(
                app, host, port, sock=sock, on_ready=ready, **http11.limits_from(config.server)
            )
        except http11.StartupFailed as error:
            raise RollwiseError(f"the gateway failed to start: {error}") from error
        return
    import uvicorn

    options = {**_UVICORN_OPTIONS, "timeout_graceful_shutdown": config.server.shutdown_timeout_s}
    uvicorn_server = _uvicorn_server(app, ready)(
        uvicorn.Config(app, host=host, port=port, log_level=log_level, **options)
    )
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn_server.run(sockets=None if sock is None else [sock])
    if not uvicorn_server.started:
        raise RollwiseError("the gateway failed to start (see the log above)")


def _uvicorn_server(app: RollwiseApp, on_ready: Callable[[], None] | None) -> type[uvicorn.Server]:
    """``uvicorn.Server``, stopping as the built-in server does: the app told at the signal.

    Built here so that uvicorn is imported only when it serves.
    """
    import uvicorn

    class Server(uvicorn.Server):
        loop: asyncio.AbstractEventLoop | None = None

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
                    self.loop.call_soon_threadsafe(app.begin_shutdown)
            super().handle_exit(sig, frame)

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and on_ready is not None:
                on_ready()

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Other workers take the connections still queued on a shared socket; those
            # this one accepted a moment ago get their request read before uvicorn
            # closes every idle connection (else they would be reset unanswered).
            for listener in self.servers:
                listener.close()
            await asyncio.sleep(_UVICORN_LINGER_S)
            await super().shutdown(sockets=sockets)

    return Server


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
