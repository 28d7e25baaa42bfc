"""Builds the gateway's ASGI application and serves it with rollwise's HTTP server or uvicorn."""

from __future__ import annotations

import contextlib
import gc
import logging
from typing import Any

from rollwise.config import GatewayConfig, is_loopback
from rollwise.errors import ConfigError, RollwiseError
from rollwise.runtime.gateway import Gateway
from rollwise.server.auth import Authenticator
from rollwise.server.control import build_control_app
from rollwise.server.dataplane import DataPlane, Receive, Scope, Send

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
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                # Models, imports and config are loaded for good: move them out of the
                # collector's sight, so that its full passes only walk what requests make.
                gc.collect()
                gc.freeze()
                gc.set_threshold(20_000, 20, 20)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.gateway.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


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
) -> None:
    """Serve the gateway until SIGINT or SIGTERM on ``server``: ``rollwise`` or ``uvicorn``."""
    if server not in ("rollwise", "uvicorn"):
        raise ConfigError(f"unknown HTTP server {server!r}: choose rollwise or uvicorn")
    app = create_app(config, insecure_dev=insecure_dev, host=host)
    if server == "rollwise":
        from rollwise.server import http11

        try:
            http11.run(app, host, port, **http11.limits_from(config.server))
        except http11.StartupFailed as error:
            raise RollwiseError(f"the gateway failed to start: {error}") from error
        return
    import uvicorn

    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(
            app,
            host=host,
            port=port,
            loop="auto",
            http="auto",
            lifespan="on",
            log_level=log_level,
            access_log=False,
            server_header=False,
            date_header=False,
            # The data plane reads no client address, so X-Forwarded-* needs no parsing.
            proxy_headers=False,
        )
