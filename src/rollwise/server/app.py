"""Builds the gateway's ASGI application and serves it with rollwise's HTTP server or uvicorn."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import Callable
from typing import Any, Protocol

from rollwise.config import GatewayConfig, is_loopback
from rollwise.errors import ConfigError, RollwiseError
from rollwise.runtime.gateway import Gateway
from rollwise.server.auth import Authenticator
from rollwise.server.control import build_control_app
from rollwise.server.dataplane import DataPlane, Receive, Scope, Send
from rollwise.server.gc_policy import settle_heap

log = logging.getLogger("rollwise.server")


class _Port(Protocol):
    """A second port the gateway serves on, living with the app (``GrpcPort``)."""

    def bind(self) -> None: ...

    async def start(self) -> None: ...

    def begin_stop(self) -> None: ...

    async def stop(self) -> None: ...


class RollwiseApp:
    """The ASGI app: runs the gateway's lifecycle and dispatches to the data plane.

    ``grpc``: the gRPC port, bound before the gateway starts (a port in use fails the
    start before anything is loaded), serving once it has, and stopped with the HTTP
    server's drain, before the gateway stops.
    """

    def __init__(
        self,
        gateway: Gateway,
        auth: Authenticator,
        host: str | None = None,
        grpc: _Port | None = None,
    ) -> None:
        self.gateway = gateway
        self.grpc = grpc
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
                # What failed is awaited on after the try, never inside its handler: see
                # rollwise.compilation on awaiting in except and finally blocks.
                failure: BaseException | None = None
                try:
                    if self.grpc is not None:
                        self.grpc.bind()
                    await self.gateway.start()
                    if self.grpc is not None:
                        await self.grpc.start()
                except (asyncio.CancelledError, Exception) as error:
                    failure = error
                if isinstance(failure, asyncio.CancelledError):
                    # The server gave the start up (a signal came first): undo what it
                    # did, so that this replica leaves the fleet instead of lingering.
                    if self.grpc is not None:
                        await self.grpc.stop()
                    await self.gateway.stop()
                    raise failure
                if failure is not None:
                    await send({"type": "lifespan.startup.failed", "message": str(failure)})
                    return
                # Models, imports and config are loaded for good: move them out of the
                # collector's sight, so that its full passes only walk what requests make.
                settle_heap()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # After the server's drain (``begin_shutdown`` came at its start).
                if self.grpc is not None:
                    await self.grpc.stop()
                await self.gateway.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def begin_shutdown(self) -> None:
        """Called the moment a stop begins, before the requests in flight are drained
        (by the built-in server, and by ``_Uvicorn`` at the signal): readiness fails and
        the controller lets its lease go; the gRPC port takes no new call."""
        self.gateway.begin_stop()
        if self.grpc is not None:
            self.grpc.begin_stop()


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
    grpc_shared: bool = False,
    **gateway_options: Any,
) -> RollwiseApp:
    """``grpc_shared``: this process is one of several workers that share the gRPC port."""
    host = host or config.server.host
    check_exposure(host, insecure_dev, bool(config.tokens))
    auth = Authenticator(config.tokens, insecure_dev=insecure_dev)
    gateway = Gateway(config, **gateway_options)
    grpc: _Port | None = None
    if config.server.grpc_port is not None:
        # Imported only here: grpcio is an extra, and a gateway without a gRPC port
        # never loads it.
        from rollwise.grpc_v2 import require_grpc

        require_grpc("server.grpc_port")
        from rollwise.server.grpc_port import GrpcPort

        grpc = GrpcPort(gateway, auth, host=host, section=config.server, shared=grpc_shared)
    return RollwiseApp(gateway, auth, host, grpc)


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
    app = create_app(
        config,
        insecure_dev=insecure_dev,
        host=host,
        # A worker of ``serve --workers`` (given its supervisor's socket) shares it.
        grpc_shared=sock is not None,
        on_hangup=on_hangup,
    )
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
    from rollwise.server.uvicorn_server import run_uvicorn

    run_uvicorn(
        app,
        host,
        port,
        log_level=log_level,
        sock=sock,
        on_ready=ready,
        shutdown_timeout_s=config.server.shutdown_timeout_s,
    )
