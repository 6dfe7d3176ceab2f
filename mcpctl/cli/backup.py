"""`mcpctl backup` and `mcpctl restore`; `backup analyze|diff|query` read backup files locally.

The analysis commands need no mcpd: they load the files into DuckDB in this process
(mcpctl.backup.analytics) and only print. Their status lines go to stderr so that
`-o json` and `-o csv` stay clean on stdout.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from mcpctl.backup import analytics
from mcpctl.backup.format import BackupError, parse
from mcpctl.cli import tables
from mcpctl.cli.context import client
from mcpctl.cli.documents import read_text
from mcpctl.cli.errors import CLIError
from mcpctl.cli.output import console

app = typer.Typer(help="Back up every resource to a JSON file.", invoke_without_command=True)
notes = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False)

FilesArgument = Annotated[list[str], typer.Argument(help="Backup files (from `backup -o`).")]


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


@contextmanager
def _errors() -> Iterator[None]:
    """Bad files, SQL or targets end as one `error:` line naming the culprit."""
    try:
        yield
    except (BackupError, analytics.AnalyticsError) as error:
        raise CLIError(" ".join(str(error).split("\n"))) from None


def _format(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise CLIError(f"unknown output format {value!r}; use {', '.join(allowed)}")
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, default=_cell)
    return str(value)


def _plain(value: Any) -> Any:
    """JSON-ready values: timestamps as ISO text, decimals as numbers."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def _table(headers: list[str], rows: list[list[Any]], null: str = "") -> None:
    """Cells as plain text (names and SQL results are never read as markup), never wrapped."""
    cells = [[null if value is None else str(_cell(value)) for value in row] for row in rows]
    print("\n".join(tables.render(list(headers), cells, tables.terminal_width())))


def _grid(title: str, headers: list[str], rows: list[list[Any]]) -> None:
    console.print(Text(title, style="bold"))
    if rows:
        _table(headers, rows)
    else:
        console.print("  (none)")
    console.print()


@app.command()
def analyze(
    files: FilesArgument,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json.")] = "table",
    top: Annotated[int, typer.Option(min=1, help="Rows in the top-N tables.")] = 10,
) -> None:
    """Summarise backup files.

    Counts per backup; servers, replicas, prompts, templates and owners of the newest one.
    """
    fmt = _format(output, ("table", "json"))
    with _errors(), notes.status("loading backups…"):
        summary = analytics.summary(files, top)
    if fmt == "json":
        print(json.dumps(summary, indent=2, default=_plain))
        return
    counts = ["users", "servers", "templates", "projects", "prompts", "replicas"]
    _grid(
        "Backups",
        ["FILE", "CREATED", *(c.upper() for c in counts)],
        [[b["file"], b["createdAt"], *(b[c] for c in counts)] for b in summary["backups"]],
    )
    latest = summary["latest"]
    _grid(
        f"Servers by transport, source and runtime ({latest})",
        ["TRANSPORT", "SOURCE", "RUNTIME", "SERVERS", "REPLICAS"],
        [list(row.values()) for row in summary["servers"]],
    )
    replicas = summary["replicas"]
    _grid(
        f"Replicas wanted: {replicas['total']} ({replicas['active']} servers scaled up, "
        f"{replicas['stopped']} at 0); top {top}",
        ["SERVER", "REPLICAS"],
        [list(row.values()) for row in replicas["top"]],
    )
    _grid(
        f"Prompts per project (top {top})",
        ["PROJECT", "OWNER", "PROMPTS"],
        [list(row.values()) for row in summary["projects"]],
    )
    _grid(
        "Templates",
        ["TEMPLATE", "PARAMETERS", "DESCRIPTION"],
        [[t["template"], t["parameters"], t["description"][:60]] for t in summary["templates"]],
    )
    _grid(
        f"Owners of projects and prompts (top {top})",
        ["OWNER", "ROLE", "PROJECTS", "PROMPTS"],
        [list(row.values()) for row in summary["owners"]],
    )


@app.command()
def diff(
    old: Annotated[str, typer.Argument(help="The older backup file.")],
    new: Annotated[str, typer.Argument(help="The newer backup file.")],
    output: Annotated[str, typer.Option("--output", "-o", help="table or json.")] = "table",
) -> None:
    """Resources added, removed and changed between two backups.

    Changed resources list the changed fields by name; no value is ever printed.
    """
    fmt = _format(output, ("table", "json"))
    with _errors(), notes.status("comparing backups…"):
        result = analytics.diff(old, new)
    if fmt == "json":
        print(json.dumps(result, indent=2))
        return
    title = (
        f"{old} → {new}: {len(result['added'])} added, {len(result['removed'])} removed, "
        f"{len(result['changed'])} changed, {result['unchanged']} unchanged"
    )
    rows = []
    for change in ("added", "removed", "changed"):
        for entry in result[change]:
            name = f"{entry['project']}/{entry['name']}" if "project" in entry else entry["name"]
            rows.append([change, entry["kind"], name, ", ".join(entry.get("fields", [])) or "-"])
    _grid(title, ["CHANGE", "KIND", "NAME", "FIELDS"], rows)


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="SQL over backups, servers, projects, prompts, …")],
    files: FilesArgument,
    output: Annotated[str, typer.Option("--output", "-o", help="table, json or csv.")] = "table",
    parquet: Annotated[
        Path | None,
        typer.Option(help="Also write every table as Parquet into this new directory."),
    ] = None,
) -> None:
    """Run SQL over backup files.

    Tables: backups, servers, projects, prompts, templates, users; every row has backup_file
    and backup_time. The SQL cannot read or write other files.
    """
    fmt = _format(output, ("table", "json", "csv"))
    with _errors(), ExitStack() as stack:
        stack.enter_context(notes.status("loading backups…"))
        staging = stack.enter_context(analytics.staged_directory(parquet)) if parquet else None
        backups = stack.enter_context(analytics.Backups(files))
        if staging is not None:
            backups.write_parquet(staging)
        result = backups.query(sql)
    if parquet is not None:
        notes.print(f"wrote {len(analytics.TABLES)} tables as Parquet to {parquet}")
    if fmt == "json":
        print(json.dumps(result.records(), indent=2, default=_plain))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([_cell(value) for value in row] for row in result.rows)
    elif result.columns:
        _table(result.columns, [list(row) for row in result.rows], null="NULL")
