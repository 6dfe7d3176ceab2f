"""`mcpctl backup` and `mcpctl restore`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from mcpctl.backup.format import BackupError, parse
from mcpctl.cli.context import client
from mcpctl.cli.documents import read_text
from mcpctl.cli.errors import CLIError
from mcpctl.cli.output import console

app = typer.Typer(help="Back up every resource to a JSON file.", invoke_without_command=True)


@app.callback()
def backup(
    ctx: typer.Context,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="File to write; - for stdout.")
    ] = None,
) -> None:
    """Write a backup of every server, project, prompt, template and user."""
    if ctx.invoked_subcommand is not None:
        return
    if output is None:
        raise CLIError("say where to write the backup: -o FILE (or -o - for stdout)")
    with console.status("taking backup…"):
        data = client(ctx).get("/api/v1/backup")
    text = json.dumps(data, indent=2) + "\n"
    if output == "-":
        sys.stdout.write(text)
        return
    path = Path(output)
    temporary = path.with_name(path.name + ".partial")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    temporary.replace(path)
    console.print(f"backed up {len(data['items'])} resources to {path}")


def restore(
    ctx: typer.Context,
    filename: Annotated[str, typer.Option("--filename", "-f", help="Backup file; - for stdin.")],
) -> None:
    """Restore a backup in one transaction: all of it, or nothing."""
    text = read_text(filename)
    try:
        parse(text, filename)
    except BackupError as error:
        raise CLIError(str(error)) from None
    with console.status("restoring…"):
        result = client(ctx).post("/api/v1/restore", content=text.encode()).json()
    for kind, counts in result["restored"].items():
        summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))
        console.print(f"{kind}: {summary}")
