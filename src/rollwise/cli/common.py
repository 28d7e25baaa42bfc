"""What every command shares: the consoles, the gateway options and the client."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

PIPED_WIDTH = 200
"""Columns of output that goes to a file or another program: rich would cut tables at 80
there, and a script reading them would get cut names and figures."""


def _width(stream: Any) -> int | None:
    if "COLUMNS" in os.environ or stream.isatty():
        return None  # the terminal's own width (or the one asked for)
    return PIPED_WIDTH


console = Console(width=_width(sys.stdout))
err = Console(stderr=True, width=_width(sys.stderr))

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", envvar="ROLLWISE_URL", help="gateway address [default: http://127.0.0.1:8080]"
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="ROLLWISE_TOKEN",
        help="bearer token (viewer or operator)",
        show_default=False,
    ),
]


def connect(url: str | None, token: str | None) -> Any:
    """A client of the gateway's control API (imported late: most commands start fast)."""
    from rollwise.client import Client

    return Client(url, token)


def print_json(value: Any) -> None:
    """JSON for programs: plain text on stdout, never wrapped or coloured."""
    sys.stdout.write(json.dumps(value, indent=2) + "\n")
    sys.stdout.flush()


def print_error(error: BaseException) -> None:
    """One line on stderr saying what went wrong."""
    # The message may quote names and server text with brackets: never read as markup.
    err.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
