"""The ``rollwise`` command line: the typer ``app`` of every command, and ``main()``.

Serve the gateway, route traffic, read status and events, register versions, run
rollouts, and deploy from CI in one command.

Every command ends with one exit code table (:mod:`rollwise.exits`): 0 promoted or
validated, 1 any other error, 2 refused input, 3 rolled back, no difference or
inconclusive (the stable version stays), 4 failed, not ready or timed out.

This module builds the ``app`` from the commands of its modules, in the order ``--help``
lists them, and holds ``main()``, which maps rollwise's errors onto that table.
"""

from __future__ import annotations

import sys

import typer

from rollwise.cli import deploy, rollouts, routing, serve, versions
from rollwise.cli.common import print_error
from rollwise.cli.version_file import (
    SPEC_FLAGS,
    VersionRequest,
    parse_option_pairs,
    version_request,
)
from rollwise.errors import RollwiseError
from rollwise.exits import exit_code_of_error

__all__ = [
    "SPEC_FLAGS",
    "VersionRequest",
    "app",
    "main",
    "parse_option_pairs",
    "version_request",
]

app = typer.Typer(
    name="rollwise",
    help="Deploy new versions of ML models safely: route, mirror, measure, roll back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Registered in this order, listed in this order by --help (groups come last).
app.command()(serve.serve)
app.command()(routing.route)
app.command()(routing.status)
app.command()(routing.reload)
app.command()(routing.events)
app.command()(versions.replicas)
app.command()(rollouts.apply)
app.command()(rollouts.rollouts)
app.command()(rollouts.watch)
app.command()(deploy.deploy)
app.command()(rollouts.pause)
app.command()(rollouts.resume)
app.command()(rollouts.promote)
app.command()(rollouts.abort)
app.command()(rollouts.rollback)
app.command()(serve.controller)
app.command()(serve.demo)
app.command()(serve.example)
app.add_typer(versions.versions_app, name="versions")


def main() -> None:
    """Entry point: one clear line and a non-zero exit code on any refusal."""
    # Standalone mode lets the command-line parser report usage errors itself (exit 2);
    # rollwise's own refusals and errors are caught here.
    try:
        app()
    except RollwiseError as error:
        print_error(error)
        # One table for every command (rollwise.exits): a refusal of the input is 2,
        # like a usage error; a version that is not ready 4; anything else 1.
        sys.exit(exit_code_of_error(error))
    except KeyboardInterrupt:
        sys.exit(130)
