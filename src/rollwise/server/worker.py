"""A worker's side of ``serve --workers N``: the link to the supervisor that started it.

The supervisor hands each worker two descriptors: the listening socket, which it serves
on, and one end of a socket pair, this link. Over it the worker says, one line each,

- ``ready REPLICA`` once its gateway has started and it accepts connections, so that a
  rolling restart stops the old worker only then;
- ``hangup`` when its gateway is asked to read the config again (SIGHUP to the worker,
  or ``POST /api/v1/config/reload``): every worker of a gateway must serve the same
  config, so that means what SIGHUP to the supervisor means, a rolling restart of them
  all, instead of one worker reloading on its own. ``hangup`` is the gateway's
  ``on_hangup``.

The supervisor never writes; when it goes away, however it went, the link reads its
end, and the worker stops as if it had been sent SIGTERM: workers never outlive the
supervisor that owns their socket.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading

log = logging.getLogger("rollwise.server")

READY = b"ready"
HANGUP = b"hangup"


class SupervisorLink:
    """The worker's end of its link to the supervisor (descriptor ``fd``)."""

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=fd)
        self._lock = threading.Lock()

    def watch(self) -> None:
        """Stop this worker (SIGTERM to itself) once the supervisor is gone."""
        thread = threading.Thread(target=self._watch, name="rollwise-supervisor-link", daemon=True)
        thread.start()

    def _watch(self) -> None:
        while True:
            try:
                data = self._sock.recv(256)
            except InterruptedError:
                continue
            except OSError:
                data = b""
            if not data:
                break
        log.warning("the supervisor is gone; this worker stops")
        os.kill(os.getpid(), signal.SIGTERM)

    def ready(self, replica: str) -> None:
        """Tell the supervisor this worker serves (once the gateway has started)."""
        self._say(READY + b" " + replica.encode("ascii", "replace"))

    def hangup(self) -> None:
        """Ask the supervisor for a rolling restart of every worker."""
        log.info("asking the supervisor for a rolling restart of every worker")
        self._say(HANGUP)

    def _say(self, line: bytes) -> None:
        try:
            with self._lock:
                self._sock.sendall(line + b"\n")
        except OSError as error:
            # The supervisor is gone; the watcher stops this worker.
            log.warning("cannot reach the supervisor: %s", error)
