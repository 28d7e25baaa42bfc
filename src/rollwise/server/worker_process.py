"""One worker of ``serve --workers N`` as its supervisor sees it: the process, and the
link it talks over.

The supervisor binds the listening socket (``listen_socket``) and starts each worker
with two descriptors: that socket, and one end of a socket pair whose other end it
keeps (``server/worker.py`` is the worker's side). The worker writes lines to it; its
end means the worker is gone, however it went.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from rollwise.errors import RollwiseError
from rollwise.server.worker_policy import Phase

log = logging.getLogger("rollwise.supervisor")

WorkerCommand = Callable[[int, int], list[str]]
"""The command line of a worker, given the listening socket's and its link's descriptors."""

BACKLOG = 2048


def cpus() -> int:
    """CPUs this process may run on (its affinity, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (its first address) for workers to share."""
    where = f"[{host}]" if ":" in host else host
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as error:
        raise RollwiseError(f"cannot listen on {where}:{port}: {error}") from error
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        reason = os.strerror(error.errno).lower() if error.errno else str(error)
        raise RollwiseError(f"cannot listen on {where}:{port}: {reason}") from error
    return sock


@dataclass(eq=False)
class WorkerProcess:
    """A worker process, its link, and what the supervisor knows of it."""

    slot: int
    process: subprocess.Popen[bytes]
    link: socket.socket
    phase: Phase = Phase.STARTING
    replica: str = ""
    ready_s: float | None = None
    stop_by_s: float | None = None
    """When it is killed if it has not stopped by then (set once it is told to stop)."""
    link_open: bool = True
    _unread: bytes = b""

    @classmethod
    def start(
        cls, slot: int, command: WorkerCommand, listener: socket.socket
    ) -> WorkerProcess | None:
        """Start the worker of ``slot``; None (logged) if the process cannot be started."""
        ours, theirs = socket.socketpair()
        listen_fd = listener.fileno()
        try:
            process = subprocess.Popen(
                command(listen_fd, theirs.fileno()),
                pass_fds=(listen_fd, theirs.fileno()),
                # A group of its own: a terminal's Ctrl-C reaches the supervisor alone,
                # which passes it on once; in the terminal's group each worker would
                # get it twice and take the second for "stop without waiting".
                process_group=0,
            )
        except OSError as error:
            log.error("cannot start worker %d: %s", slot, error)
            ours.close()
            return None
        finally:
            theirs.close()
        ours.setblocking(False)
        return cls(slot, process, ours)

    def describe(self) -> str:
        replica = f", replica {self.replica}" if self.replica else ""
        return f"worker {self.slot} (pid {self.process.pid}{replica})"

    def read_lines(self) -> list[bytes] | None:
        """The whole lines the worker has written since the last call; None once its
        link has ended (the worker is exiting)."""
        try:
            data = self.link.recv(4096)
        except BlockingIOError:
            return []
        except OSError:
            data = b""
        if not data:
            self.link_open = False
            return None
        *lines, self._unread = (self._unread + data).split(b"\n")
        return lines

    def signal(self, number: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(number)
