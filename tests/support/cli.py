"""Run the ``rollwise`` command line as a subprocess, as a person or a CI job would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def rollwise(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``rollwise ARGS`` with its output captured; wide, so tables do not wrap."""
    return subprocess.run(
        [sys.executable, "-m", "rollwise.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        cwd=cwd,
    )
