"""The version and fleet commands: versions add, ls and rm, and replicas."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from rollwise.cli.common import TokenOption, UrlOption, connect, console, print_json
from rollwise.cli.version_file import parse_option_pairs, version_request

versions_app = typer.Typer(
    name="versions",
    help="Versions of models, also registered at runtime: add, list, retire.",
    no_args_is_help=True,
)


@versions_app.command("add")
def versions_add(
    model: Annotated[
        str | None, typer.Argument(help="model name [default: model: in the file]")
    ] = None,
    version: Annotated[
        str | None, typer.Argument(help="version name [default: version: in the file]")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="version file: the spec (YAML or JSON) as in the config"),
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="onnx, sklearn, http, mlflow, fake, ...")
    ] = None,
    path: Annotated[str | None, typer.Option(help="artifact file, on the gateway's side")] = None,
    sha256: Annotated[str | None, typer.Option(help="the artifact's sha256")] = None,
    artifact_url: Annotated[
        str | None,
        typer.Option(
            "--artifact-url",
            help="the spec's url: an artifact to download (needs --sha256), or an http upstream",
        ),
    ] = None,
    uri: Annotated[str | None, typer.Option(help="e.g. models:/iris/3 (mlflow)")] = None,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="KEY=VALUE: any other option of the backend"),
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Register a version; every replica loads it in the background, no restart.

    E.g. `rollwise versions add iris v4 --backend onnx --path iris-v4.onnx`, or
    `rollwise versions add -f version.yaml`. The same spec again changes nothing; another
    spec under a registered name is refused (versions are immutable).
    """
    from rollwise.config import load_document
    from rollwise.views import fleet_text

    document = load_document(file, what="version file ") if file is not None else None
    request = version_request(
        document,
        source=str(file) if file is not None else "the command line",
        model=model,
        name=version,
        flags={"backend": backend, "path": path, "sha256": sha256, "url": artifact_url, "uri": uri},
        options=parse_option_pairs(option or []),
    )
    with connect(url, token) as client:
        result = client.add_version(request.model, request.name, request.spec)
    where = fleet_text((result.get("version") or {}).get("fleet"))
    if result.get("created"):
        console.print(
            f"{request.model} {request.name}: registered; {where}. "
            f"See it load: rollwise versions ls {request.model}",
            highlight=False,
        )
    else:
        console.print(
            f"{request.model} {request.name}: unchanged (already registered with this spec); "
            f"{where}",
            highlight=False,
        )


@versions_app.command("ls")
def versions_ls(
    model: Annotated[str | None, typer.Argument(help="only this model")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Every version: source (config or api), backend, artifact, readiness on the fleet."""
    from rollwise.views import version_problems, versions_table

    with connect(url, token) as client:
        found = client.versions(model)
    if as_json:
        print_json(found)
        return
    if not found:
        console.print("no versions")
        return
    console.print(versions_table(found))
    for line in version_problems(found):
        console.print(f"  [yellow]{line}[/]", highlight=False)


@versions_app.command("rm")
def versions_rm(
    model: Annotated[str, typer.Argument(help="model name")],
    version: Annotated[str, typer.Argument(help="version to retire")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Retire a version registered through the API that nothing uses any more.

    Refused (exit 2, saying why) while it is stable, has a share or a mirror, is in a
    rollout or is the rollback target; a config-managed version is retired by removing
    it from the config.
    """
    with connect(url, token) as client:
        client.remove_version(model, version)
    console.print(f"{model} {version}: retired", highlight=False)


def replicas(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """The gateway replicas: live or not (by heartbeat), uptime, versions ready."""
    from rollwise.views import replicas_table

    with connect(url, token) as client:
        found = client.replicas()
    if as_json:
        print_json(found)
        return
    listed = found.get("replicas") or []
    if not listed:
        console.print("no replicas")
        return
    table = replicas_table(listed, time.time())
    timeout_s = found.get("heartbeat_timeout_s")
    if timeout_s is not None:
        table.caption = f"live: a heartbeat within the last {timeout_s:g} s"
        table.caption_justify = "left"
    console.print(table)
