"""The rollout commands: apply, rollouts, watch, and pause, resume, promote, abort, rollback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from rollwise.cli.common import TokenOption, UrlOption, connect, console, err
from rollwise.cli.follow import (
    AbortOnTimeoutOption,
    IntervalOption,
    ReadyTimeoutOption,
    after_timeout,
    load_rollout_spec,
    wait_until_ready,
    watch_live,
)
from rollwise.exits import Result, exit_code, result_of_rollout

ReasonOption = Annotated[str, typer.Option("--reason", "-r", help="why, recorded in the event log")]
ModelArgument = Annotated[str, typer.Argument(help="model name")]


def apply(
    file: Annotated[Path, typer.Option("--file", "-f", help="rollout spec (YAML or JSON)")],
    replace: Annotated[
        bool, typer.Option("--replace", help="abort the model's rollout in progress first")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="check the spec and show its steps; change nothing")
    ] = False,
    wait_ready: Annotated[
        bool,
        typer.Option(
            "--wait-ready",
            help="first wait until the candidate is ready on every live replica "
            "(exit 4 when it fails to load or --ready-timeout passes)",
        ),
    ] = False,
    ready_timeout: ReadyTimeoutOption = 300.0,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="follow the rollout live to its end; exit 0 promoted or validated, "
            "3 rolled back (or an A/B test without a winner: no difference, inconclusive), "
            "4 failed or timed out",
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0, help="with --wait: stop waiting after this many seconds"),
    ] = None,
    abort_on_timeout: AbortOnTimeoutOption = False,
    interval: IntervalOption = 1.0,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Start a rollout: canary, linear, bluegreen, shadow, abtest or custom steps."""
    spec, parsed = load_rollout_spec(file)
    with connect(url, token) as client:
        if dry_run:
            # A dry run changes nothing and so waits for nothing.
            result = client.apply(spec, dry_run=True)
            console.print(f"{result['summary']}: valid, {len(result['steps'])} steps")
            for line in plan_lines(result):
                console.print(line, highlight=False)
            interface = result.get("interface")
            if interface:
                console.print(
                    f"interface of {interface['candidate']} against {interface['stable']}:",
                    highlight=False,
                )
                for line in interface["text"]:
                    console.print(f"  {line}", highlight=False, markup=False)
            return
        if wait_ready:
            wait_until_ready(
                client, parsed.model, parsed.candidate, ready_timeout, interval, console.print
            )
        result = client.apply(spec, replace=replace)
        console.print(
            f"rollout #{result['id']} of {result['model']} started: {result['strategy']} "
            f"{result['stable']} → {result['candidate']} ({result['steps']} steps)."
            + ("" if wait else f" Follow it with: rollwise watch {result['model']}")
        )
        if not wait:
            return
        rollout, timed_out = watch_live(client, parsed.model, result["id"], interval, timeout)
        if timed_out:
            assert timeout is not None
            after_timeout(client, parsed.model, result["id"], timeout, abort_on_timeout, err.print)
            raise typer.Exit(exit_code(Result.TIMEOUT))
    raise typer.Exit(exit_code(result_of_rollout(rollout["status"]) or Result.TIMEOUT))


def rollouts(
    model: Annotated[str | None, typer.Argument(help="only this model")] = None,
    active: Annotated[bool, typer.Option("--active", help="only rollouts in progress")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """All rollouts, newest first: model, strategy, phase, step, weights."""
    from rollwise.views import rollouts_table

    with connect(url, token) as client:
        found = client.rollouts(model, active=active)
    if as_json:
        console.print_json(json.dumps(found))
        return
    if not found:
        console.print("no rollouts")
        return
    console.print(rollouts_table(found))


def watch(
    model: ModelArgument,
    interval: Annotated[float, typer.Option(min=0.05, help="seconds between refreshes")] = 1.0,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Follow a rollout live (step, weights, gate figures) until it ends.

    Exits 0 promoted or validated; 3 rolled back (also an abort), or an A/B test that
    ended without a winner (no difference, inconclusive: the stable version stays); 4
    failed.
    """
    with connect(url, token) as client:
        rollout, _ = watch_live(client, model, None, interval, None)
    raise typer.Exit(exit_code(result_of_rollout(rollout["status"]) or Result.ERROR))


# -- steering the rollout in progress: one call, one line saying where it stands -------


def _command(
    action: str, model: str, reason: str, url: str | None, token: str | None, **extra: Any
) -> None:
    with connect(url, token) as client:
        result = getattr(client, action)(model, reason, **extra)
    status = result["status"]
    console.print(
        f"{model}: {status['phase'].replace('_', ' ')} — {status['message']}", highlight=False
    )


def pause(
    model: ModelArgument,
    reason: ReasonOption = "",
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Hold a rollout where it is (gates keep watching; a failure still rolls back)."""
    _command("pause", model, reason, url, token)


def resume(
    model: ModelArgument,
    reason: ReasonOption = "",
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Go on with a paused rollout from where its step was paused."""
    _command("resume", model, reason, url, token)


def promote(
    model: ModelArgument,
    full: Annotated[
        bool, typer.Option("--full", help="make the candidate stable now, skipping all steps")
    ] = False,
    reason: ReasonOption = "",
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Let the current step go (a pause, an analysis); with --full, promote at once."""
    _command("promote", model, reason, url, token, full=full)


def abort(
    model: ModelArgument,
    reason: ReasonOption = "",
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Stop a rollout in progress: all traffic back to the stable version at once."""
    _command("abort", model, reason, url, token)


def rollback(
    model: ModelArgument,
    reason: ReasonOption = "",
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """All traffic back to the previous stable version at once, also after a promotion."""
    _command("rollback", model, reason, url, token)


def plan_lines(result: dict[str, Any]) -> list[str]:
    """A dry run's steps in words; an A/B test's samples per arm and expected time; an
    analysis's gates with what each needs and when, and a warning when that comes after
    the analysis gives up."""
    window = f"(the last {result['rate_window_s']:g} s)"
    lines = []
    for entry in result["plan"]:
        line = f"  {entry['step']}. {entry['text']}"
        if "samples_per_arm" in entry:
            line += f" — plans {entry['samples_per_arm']:,} samples per arm"
            expected = entry["expected_s"]
            if expected is None:
                line += "; no traffic seen lately, so no expected time"
            else:
                line += f", about {_duration(expected)} at {entry['rate_per_s']:.1f}/s {window}"
            if entry.get("note"):
                line += f"; {entry['note']}"
        if "gates" in entry:
            acts = "rolls back" if entry["on_inconclusive"] == "rollback" else "pauses"
            line += f" — gives up undecided after {entry['limit_s']:g} s and {acts}"
            lines.append(line)
            lines.extend(_analysis_lines(entry, window))
        else:
            lines.append(line)
    return lines


def _analysis_lines(entry: dict[str, Any], window: str) -> list[str]:
    """Under an analysis step: each gate's samples and time, then the trap, if any."""
    lines = []
    for gate in entry["gates"]:
        line = f"       {gate['gate']}: {gate['samples']:,} samples per version to judge"
        if gate["expected_s"] is not None:
            line += f", about {_duration(gate['expected_s'])} at {gate['rate_per_s']:.2g}/s"
        elif entry.get("preview_only"):
            line += "; only preview requests reach the candidate here, so no expected time"
        else:
            line += "; no traffic seen lately, so no expected time"
        lines.append(line)
    if entry["late"]:
        held, limit = entry["held_s"], entry["limit_s"]
        has = f"{held + limit:g} s ({held:g} s of pause before it + {limit:g} s)"
        if not held:
            has = f"{limit:g} s"
        then = "rolled back" if entry["on_inconclusive"] == "rollback" else "paused"
        lines.append(
            f"       warning: min_samples take about {_duration(entry['expected_s'])} at the "
            f"traffic {window}, more than the {has} this analysis has: even a good "
            f"candidate would be {then}; raise {entry['limit_key']}, lower min_samples, or "
            "give the candidate more traffic"
        )
    return lines


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
