"""Output piped to another program is not cut at 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        pytest.param(None, "200", id="piped: wide"),
        pytest.param("120", "120", id="COLUMNS is honoured"),
    ],
)
def test_console_width_when_piped(columns: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    result = subprocess.run(
        [sys.executable, "-c", "from rollwise.cli.common import console; print(console.width)"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert result.stdout.strip() == expected
