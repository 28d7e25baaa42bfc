"""What apply, watch and deploy share: reading a spec, waiting until ready, following."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from rollwise.cli.common import console
from rollwise.errors import ConfigError
from rollwise.exits import ACTIVE_PHASES

IntervalOption = Annotated[
    float, typer.Option("--interval", min=0.05, help="seconds between polls of the gateway")
]
ReadyTimeoutOption = Annotated[
    float,
    typer.Option(
        "--ready-timeout",
        min=0,
        help="seconds to wait for the candidate to be ready on every live replica",
    ),
]
AbortOnTimeoutOption = Annotated[
    bool,
    typer.Option(
        "--abort-on-timeout",
        help="abort the rollout when the wait times out (it goes on otherwise)",
    ),
]


def load_rollout_spec(file: Path) -> tuple[Any, Any]:
    """The rollout spec file as a mapping and parsed; a bad one is refused naming the file,
    before any call."""
    from rollwise.config import load_document
    from rollwise.rollout import parse_rollout_spec

    spec = load_document(file, what="rollout spec ")
    try:
        return spec, parse_rollout_spec(spec)
    except ConfigError as error:
        raise ConfigError(f"{file}: {error}") from None


def wait_until_ready(
    client: Any,
    model: str,
    version: str,
    timeout_s: float,
    interval_s: float,
    say: Any,
) -> dict[str, Any]:
    """Wait until ``version`` is ready on every live replica, saying how far it got each
    time that changes; raises the client's ``NotReady`` (exit 4) when it cannot be."""
    from rollwise.views import fleet_text

    shown: list[str] = []

    def progress(found: dict[str, Any]) -> None:
        text = fleet_text(found.get("fleet"))
        if not shown or shown[-1] != text:
            shown.append(text)
            say(f"{model} {version}: {text} (waiting up to {timeout_s:g} s)")

    ready = client.wait_ready(
        model, version, timeout_s=timeout_s, interval_s=interval_s, on_poll=progress
    )
    say(f"{model} {version}: {fleet_text(ready.get('fleet'))}")
    return dict(ready)


def after_timeout(
    client: Any, model: str, rollout_id: int, timeout_s: float, abort: bool, say: Any
) -> dict[str, Any]:
    """The wait for a rollout ran out: abort it if asked, else leave it running."""
    if abort:
        client.abort(model, f"the wait for it timed out after {timeout_s:g} s")
        say(f"{model}: still running after {timeout_s:g} s; aborted")
        return dict(client.rollout_by_id(model, rollout_id))
    say(
        f"{model}: still running after {timeout_s:g} s; it goes on "
        f"(follow it with: rollwise watch {model})"
    )
    return dict(client.rollout_by_id(model, rollout_id))


def watch_live(
    client: Any,
    model: str,
    rollout_id: int | None,
    interval_s: float,
    timeout_s: float | None,
) -> tuple[dict[str, Any], bool]:
    """Show a rollout live until it ends; return it and whether the wait timed out.
    ``rollout_id`` None follows the model's latest rollout, whichever it is."""
    from rich.live import Live

    from rollwise.views import rollout_view

    def fetch() -> dict[str, Any]:
        found = (
            client.rollout(model) if rollout_id is None else client.rollout_by_id(model, rollout_id)
        )
        return dict(found)

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    rollout = fetch()
    timed_out = False
    with Live(rollout_view(rollout), console=console, refresh_per_second=4) as live:
        while rollout["status"]["phase"] in ACTIVE_PHASES:
            if deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                break
            time.sleep(interval_s)
            rollout = fetch()
            live.update(rollout_view(rollout))
    if not console.is_terminal:
        # Live ends its last view with a newline on a terminal only; logs need it too.
        console.line()
    return rollout, timed_out
