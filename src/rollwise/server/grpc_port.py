"""The gateway's gRPC port (``server.grpc_port``): a grpc.aio server of the Open
Inference Protocol, living and stopping with the HTTP server beside it.

Its life, driven by the app's lifespan (``server.app``):

- ``bind`` before the gateway starts, so that a port in use fails the start before
  anything was loaded or joined;
- ``start`` once the gateway serves: calls are taken from then on;
- ``begin_stop`` the moment a stop begins (SIGTERM), with the HTTP server's drain: no
  new call is taken, and the calls in flight have ``server.shutdown_timeout_s`` to
  end before grpc cancels them;
- ``stop`` before the gateway stops: waits for that, and for the calls whose callers
  left (``InferenceService.drain``), within the same time.

Workers of ``serve --workers`` each bind the port with SO_REUSEPORT (``shared``), the
kernel spreading connections among them; a worker that stops closes its listener, and
clients reconnect to the others. A single gateway binds it alone, so that a second
process given the same port fails loudly instead of quietly taking half the calls.

Bounds: a message at most ``server.max_body_bytes`` (a larger one gets
RESOURCE_EXHAUSTED from grpc), and ``server.max_connections`` calls at once (one more
gets RESOURCE_EXHAUSTED too).
"""

from __future__ import annotations

import asyncio
import logging

import grpc
import grpc.aio

from rollwise.config import ServerSection
from rollwise.errors import RollwiseError
from rollwise.grpc_v2.service import handler
from rollwise.runtime.gateway import Gateway
from rollwise.server.auth import Authenticator
from rollwise.server.grpc_service import InferenceService

log = logging.getLogger("rollwise.grpc")


def address(host: str, port: int) -> str:
    """``host:port`` as grpc takes it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class GrpcPort:
    """The gRPC server of one gateway process."""

    def __init__(
        self,
        gateway: Gateway,
        auth: Authenticator,
        *,
        host: str,
        section: ServerSection,
        shared: bool,
    ) -> None:
        if section.grpc_port is None:
            raise RollwiseError("the gRPC port is off (server.grpc_port is not set)")
        self.service = InferenceService(gateway, auth)
        self.address = address(host, section.grpc_port)
        self.grace_s = section.shutdown_timeout_s
        self.max_message_bytes = section.max_body_bytes
        self.max_calls = section.max_connections
        self.shared = shared
        self._server: grpc.aio.Server | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._stop_began_s = 0.0

    def bind(self) -> None:
        """Create the server and bind its port (in the event loop that will serve it);
        ``RollwiseError`` when the port cannot be bound."""
        server = grpc.aio.server(
            maximum_concurrent_rpcs=self.max_calls,
            options=[
                ("grpc.so_reuseport", 1 if self.shared else 0),
                ("grpc.max_receive_message_length", self.max_message_bytes),
            ],
        )
        server.add_generic_rpc_handlers((handler(self.service),))
        try:
            server.add_insecure_port(self.address)
        except RuntimeError as error:
            raise RollwiseError(
                f"cannot listen for gRPC on {self.address} (server.grpc_port): the port is "
                "in use or the address is not this machine's"
            ) from error
        self._server = server

    async def start(self) -> None:
        if self._server is None:
            self.bind()
        assert self._server is not None
        await self._server.start()
        log.info("listening for gRPC (Open Inference Protocol) on %s", self.address)

    def begin_stop(self) -> None:
        """Stop taking calls now; those in flight get ``grace_s`` (see ``stop``)."""
        if self._server is None or self._stopping is not None:
            return
        loop = asyncio.get_running_loop()
        self._stop_began_s = loop.time()
        self._stopping = loop.create_task(self._server.stop(self.grace_s))

    async def stop(self) -> None:
        """Return once the calls in flight ended, or ``grace_s`` after the stop began."""
        if self._server is None:
            return
        self.begin_stop()
        assert self._stopping is not None
        await self._stopping
        left_s = self.grace_s - (asyncio.get_running_loop().time() - self._stop_began_s)
        await self.service.drain(left_s)
        self._server = None
        log.info("the gRPC port is closed")
