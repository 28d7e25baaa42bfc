"""The shadow host's child process: it runs the model code of the gateway's in-process
shadow versions, answering the gateway (``shadow_host``) over its socket.

``serve_child`` builds each model from the same kind, options and folder as the gateway
did (``create_backend``), loads it once, and refuses to answer with a model file whose
sha256 differs from the one the gateway loaded. It keeps at most ``MAX_LOADED`` models,
unloads one unused for ``IDLE_UNLOAD_S``, and exits when the gateway closes the socket
or dies. It runs at the gateway's own priority: lowered, it was held up in the middle
of its calls whenever the machine was busy, and the shadow looked slower than it is, so
that a latency gate rolled back a candidate for what the isolation did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollwise.backends.base import Backend, InferenceRequest
from rollwise.backends.shadow_wire import _HEADER, HostedModel, _frame, encode_error
from rollwise.domain import VersionSpec
from rollwise.errors import BackendError, BackendLoadError

MAX_LOADED = 16
"""Models the child holds at most; the least recently used one is unloaded beyond."""
IDLE_UNLOAD_S = 600.0
"""A model the child has not used for this long is unloaded (a shadow no longer
mirrored, a version promoted to serve): it is loaded again if it is mirrored again."""
LOAD_RETRY_S = 10.0
"""A model that failed to load in the child is tried again after this long, not on
every mirrored request."""


def serve_child(fd: int) -> None:
    """The child's main: answer the gateway on socket ``fd`` until it closes."""
    # Ctrl-C in a terminal reaches the whole process group: the gateway decides when
    # its child stops (it closes the socket).
    # So do SIGTERM and SIGHUP sent to the group (systemd, a closed terminal): the
    # gateway drains first, then closes the socket.
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)
    # Processes the model code starts must not hold the socket: the gateway would never
    # see this process's end.
    os.set_inheritable(fd, False)
    logging.basicConfig(level=logging.WARNING, format="shadow host: %(levelname)s %(message)s")
    asyncio.run(_Child(socket.socket(fileno=fd)).run())
    # Model threads still running (a hung model) must not keep the process alive.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@dataclass
class _Entry:
    """A model in the child: loading, loaded, or failed to load."""

    model: HostedModel
    load: asyncio.Task[Backend]
    used_s: float
    in_flight: int = 0
    dropped: bool = False
    """Forgotten or evicted: closed once its calls in flight are done."""
    failed_s: float | None = field(default=None)


class _Child:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.models: dict[int, HostedModel] = {}
        self.entries: OrderedDict[int, _Entry] = OrderedDict()
        self.writer: asyncio.StreamWriter | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        reader, self.writer = await asyncio.open_connection(sock=self.sock)
        sweeper = asyncio.get_running_loop().create_task(self._sweep())
        try:
            while True:
                try:
                    header = await reader.readexactly(_HEADER.size)
                    (length,) = _HEADER.unpack(header)
                    body = await reader.readexactly(length)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the gateway closed the socket, or died
                self._dispatch(pickle.loads(body))
        finally:
            sweeper.cancel()
            for entry in list(self.entries.values()):
                await self._close(entry)

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "predict":
            _, call_id, token, request = message
            # The model and its entry are taken now, not when the task starts: a "forget"
            # read in the same burst must not fail a call sent before it.
            hosted = self.models.get(token)
            entry = None if hosted is None else self._entry(hosted)
            if entry is not None:
                entry.in_flight += 1
            task = asyncio.get_running_loop().create_task(
                self._predict(call_id, hosted, entry, request)
            )
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif kind == "model":
            model: HostedModel = message[1]
            self.models[model.token] = model
            self._entry(model)
        elif kind == "forget":
            self.models.pop(message[1], None)
            entry = self.entries.pop(message[1], None)
            if entry is not None:
                self._drop(entry)

    async def _predict(
        self,
        call_id: int,
        model: HostedModel | None,
        entry: _Entry | None,
        request: InferenceRequest,
    ) -> None:
        name = model.name if model is not None else "?"
        try:
            if model is None or entry is None:
                raise BackendError("the shadow host was not told about this version")
            try:
                backend = await asyncio.shield(entry.load)
                # The model's own time, as the gateway times a version's call: the trip
                # here and back is not the version's latency.
                started = time.perf_counter()
                response = await backend.predict(request)
                model_ms = (time.perf_counter() - started) * 1000.0
                reply: tuple[Any, ...] = ("ok", call_id, (response, model_ms))
            finally:
                entry.in_flight -= 1
                entry.used_s = time.monotonic()
                if entry.dropped and entry.in_flight == 0:
                    await self._close(entry)
        except Exception as error:
            reply = ("error", call_id, encode_error(error, name))
        self._send(reply, name)

    def _send(self, reply: tuple[Any, ...], name: str) -> None:
        assert self.writer is not None
        try:
            frame = _frame(reply)
        except Exception as error:  # an answer holding something pickle cannot carry
            frame = _frame(("error", reply[1], encode_error(error, name)))
        if not self.writer.is_closing():
            self.writer.write(frame)

    def _entry(self, model: HostedModel) -> _Entry:
        now = time.monotonic()
        entry = self.entries.get(model.token)
        if entry is not None and entry.failed_s is not None and now - entry.failed_s > LOAD_RETRY_S:
            del self.entries[model.token]
            entry = None
        if entry is None:
            task = asyncio.get_running_loop().create_task(self._load(model))
            entry = _Entry(model, task, now)
            task.add_done_callback(lambda done: self._loaded(entry, done))
            self.entries[model.token] = entry
            while len(self.entries) > MAX_LOADED:
                _, oldest = self.entries.popitem(last=False)
                self._drop(oldest)
        else:
            self.entries.move_to_end(model.token)
        return entry

    def _loaded(self, entry: _Entry, done: asyncio.Task[Backend]) -> None:
        if entry.dropped:
            return  # unloaded already, and the gateway told so: not "ready" again
        if done.cancelled():
            entry.failed_s = time.monotonic()
            return
        error = done.exception()
        if error is not None:
            entry.failed_s = time.monotonic()
        token, name = entry.model.token, entry.model.name
        wire = encode_error(error, name) if isinstance(error, Exception) else None
        self._send(("loaded", token, wire), name)

    async def _load(self, model: HostedModel) -> Backend:
        from rollwise.backends.registry import create_backend

        spec = VersionSpec(model.name, model.kind, model.options)
        backend = create_backend(spec, Path(model.base_dir))
        try:
            await backend.load()
            found = backend.artifact_sha256
            if model.artifact_sha256 and found != model.artifact_sha256:
                raise BackendLoadError(
                    f"version {model.name!r}: its model file changed since the gateway loaded "
                    f"it (sha256 {found}, the gateway's {model.artifact_sha256}); reload the "
                    "version to mirror to the new file",
                    version=model.name,
                )
        except BaseException:
            with contextlib.suppress(Exception):
                await backend.close()
            raise
        return backend

    def _drop(self, entry: _Entry) -> None:
        # The gateway runs the calls in its own process until the model is back.
        self._send(("unloaded", entry.model.token, None), entry.model.name)
        entry.dropped = True
        if entry.in_flight == 0:
            task = asyncio.get_running_loop().create_task(self._close(entry))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    @staticmethod
    async def _close(entry: _Entry) -> None:
        if not entry.load.done():
            entry.load.cancel()
            return
        if entry.load.cancelled() or entry.load.exception() is not None:
            return
        with contextlib.suppress(Exception):
            await entry.load.result().close()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(IDLE_UNLOAD_S / 10)
            now = time.monotonic()
            for token, entry in list(self.entries.items()):
                if entry.in_flight == 0 and now - entry.used_s > IDLE_UNLOAD_S:
                    del self.entries[token]
                    self._drop(entry)
