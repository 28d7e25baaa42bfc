"""The modules a built wheel compiles with mypyc (``setup.py``), and which of them this
installation runs compiled.

They are the ones every proxied request runs through; compiled, the gateway spends about
a quarter less CPU per request (``bench/gateway.py``). Each also ships as its ``.py``
source, which Python uses where no compiled file was built.

Rules for these modules, checked by ``tests/unit/test_compilation.py``:

- **No ``await`` inside an ``except`` handler or a ``finally`` block.** A compiled
  coroutine that suspends there leaves its exception as the thread's "exception being
  handled" while other tasks run, and puts back a stale one when it goes on: other
  exceptions then get the wrong ``__context__``, and a bare ``raise`` after the await
  raised another task's exception (a signal during start-up escaped as a
  ``CancelledError``). Keep the exception in a variable, and await after the ``try``.
- Annotations are checked at run time: a value of another type than its annotation
  says raises ``TypeError`` (uvloop's servers give a list where asyncio's type says a
  tuple); read such a value as ``Any``.
- No class that subclasses a built-in other than ``Exception`` (``RuntimeError`` and
  the like cannot be compiled), no ``@runtime_checkable`` protocol, and no ``continue``
  inside a ``try`` with a ``finally``.
"""

from __future__ import annotations

import importlib.util
from importlib.machinery import EXTENSION_SUFFIXES

COMPILED_MODULES: tuple[str, ...] = (
    "rollwise.server.app",
    "rollwise.server.http11",
    "rollwise.server.dataplane",
    "rollwise.server.proxy",
    "rollwise.server.payloads",
    "rollwise.runtime.serving",
    "rollwise.runtime.predictions",
    "rollwise.backends.messages",
    "rollwise.backends.http",
    "rollwise.backends.upstream",
    "rollwise.backends.upstream_conn",
    "rollwise.backends.upstream_body",
    "rollwise.backends.upstream_stream",
    "rollwise.backends.exchange",
    "rollwise.backends.rest",
    "rollwise.metrics.recorder",
    "rollwise.metrics.histogram",
    "rollwise.routing.table",
    "rollwise.routing.hashing",
    "rollwise.routing.weights",
)
"""setup.py reads this assignment as text: it cannot import the package it builds."""


def compiled_here() -> list[str]:
    """The modules of ``COMPILED_MODULES`` that load from a compiled extension here."""
    suffixes = tuple(EXTENSION_SUFFIXES)
    found = []
    for name in COMPILED_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin is not None and spec.origin.endswith(suffixes):
            found.append(name)
    return found
