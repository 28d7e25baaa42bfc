"""``rollwise deploy``: register, wait until ready, roll out, follow, one exit code."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from rollwise.cli.common import TokenOption, UrlOption, connect, console, print_error, print_json
from rollwise.cli.follow import (
    AbortOnTimeoutOption,
    IntervalOption,
    ReadyTimeoutOption,
    after_timeout,
    load_rollout_spec,
    wait_until_ready,
)
from rollwise.cli.version_file import version_request
from rollwise.errors import RollwiseError
from rollwise.exits import ACTIVE_PHASES, Result, exit_code, result_of_error, result_of_rollout


@dataclass
class Deployment:
    """What ``rollwise deploy`` did so far; its JSON is the ``--json`` document."""

    model: str | None = None
    candidate: str | None = None
    version: dict[str, Any] | None = None
    rollout: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    result: Result = Result.ERROR
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "candidate": self.candidate,
            "version": self.version,
            "rollout": self.rollout,
            "events": self.events,
            "exit_code": exit_code(self.result),
            "result": self.result.value,
            "message": self.message,
        }


def _deploy(
    done: Deployment,
    *,
    file: Path,
    version_file: Path | None,
    timeout_s: float,
    ready_timeout_s: float,
    abort_on_timeout: bool,
    replace: bool,
    interval_s: float,
    url: str | None,
    token: str | None,
    say: Any,
) -> None:
    """The steps of ``deploy``, recording each in ``done``; errors propagate."""
    from rollwise.client import NotReady
    from rollwise.config import load_document
    from rollwise.views import event_line

    spec, parsed = load_rollout_spec(file)
    done.model, done.candidate = parsed.model, parsed.candidate
    request = None
    if version_file is not None:
        # Read and checked before the first call, so a bad file changes nothing.
        request = version_request(
            load_document(version_file, what="version file "),
            source=str(version_file),
            model=parsed.model,
            name=parsed.candidate,
            origin="in the rollout spec",
        )
    with connect(url, token) as client:
        if request is not None:
            added = client.add_version(request.model, request.name, request.spec)
            done.version = added.get("version")
            state = "registered" if added.get("created") else "already registered, unchanged"
            say(f"{parsed.model} {parsed.candidate}: {state}")
        try:
            done.version = wait_until_ready(
                client, parsed.model, parsed.candidate, ready_timeout_s, interval_s, say
            )
        except NotReady as error:
            done.version = error.version
            raise
        after = client.last_event_id(parsed.model)
        started = client.apply(spec, replace=replace)
        done.rollout = started
        rollout_id = int(started["id"])
        say(
            f"rollout #{rollout_id} of {parsed.model} started: {started['strategy']} "
            f"{started['stable']} → {started['candidate']} ({started['steps']} steps)"
        )
        deadline = time.monotonic() + timeout_s
        ended = False
        for rollout, fresh in client.follow(
            parsed.model, rollout_id, after_event_id=after, interval_s=interval_s
        ):
            done.rollout = rollout
            done.events.extend(fresh)
            for event in fresh:
                say(event_line(event))
            ended = rollout["status"]["phase"] not in ACTIVE_PHASES
            if ended or time.monotonic() >= deadline:
                break
        if not ended:
            done.result = Result.TIMEOUT
            done.rollout = after_timeout(
                client, parsed.model, rollout_id, timeout_s, abort_on_timeout, say
            )
            seen = max([after, *(int(e["id"]) for e in done.events)])
            done.events.extend(
                e
                for e in client.events(parsed.model, seen, 1000)
                if (e.get("data") or {}).get("rollout") == rollout_id
            )
            done.message = f"still running after {timeout_s:g} s" + (
                "; aborted" if abort_on_timeout else ""
            )
            return
    assert done.rollout is not None
    status = done.rollout["status"]
    done.result = result_of_rollout(status) or Result.ERROR
    done.message = str(status.get("message", ""))


def deploy(
    file: Annotated[Path, typer.Option("--file", "-f", help="rollout spec (YAML or JSON)")],
    version_file: Annotated[
        Path | None,
        typer.Option(
            "--version",
            help="version file to register first; its model and version default to the "
            "rollout's model and candidate",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="seconds to follow the rollout at most")
    ] = 1800.0,
    ready_timeout: ReadyTimeoutOption = 300.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON document at the end, nothing else")
    ] = False,
    abort_on_timeout: AbortOnTimeoutOption = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="abort the model's rollout in progress first")
    ] = False,
    interval: IntervalOption = 1.0,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Deploy from CI in one command: register the candidate (--version), wait until it is
    ready on every live replica, start the rollout and follow it to its end.

    Exit codes: 0 promoted or validated; 2 refused (bad spec or version file, unknown
    model, conflict, forbidden); 3 rolled back, or an A/B test without a winner (no
    difference, inconclusive); 4 failed, not ready, or timed out (the rollout goes on
    unless --abort-on-timeout); 1 any other error.
    """

    def say(line: str) -> None:
        if not as_json:
            console.print(line, highlight=False, soft_wrap=True)

    done = Deployment()
    try:
        _deploy(
            done,
            file=file,
            version_file=version_file,
            timeout_s=timeout,
            ready_timeout_s=ready_timeout,
            abort_on_timeout=abort_on_timeout,
            replace=replace,
            interval_s=interval,
            url=url,
            token=token,
            say=say,
        )
    except RollwiseError as error:
        done.result = result_of_error(error)
        done.message = str(error)
        print_error(error)
    code = exit_code(done.result)
    if as_json:
        print_json(done.to_json())
    else:
        say(
            f"deploy of {done.model or '?'} {done.candidate or '?'}: "
            f"{done.result.value.replace('_', ' ')} (exit {code})"
            + (f" — {done.message}" if done.message and done.result is not Result.REFUSED else "")
        )
    raise typer.Exit(code)
