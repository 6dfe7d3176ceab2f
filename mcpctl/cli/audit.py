"""`mcpctl audit`: who called what, with which outcome; `--summary` per user x tool."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mcpctl.cli.context import client
from mcpctl.cli.errors import CLIError
from mcpctl.cli.output import Format, emit, parse_format, print_rows


def audit(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(help="From: 30m, 24h, 7d ago, or an ISO time.")] = "1h",
    until: Annotated[str | None, typer.Option(help="Until (default: now).")] = None,
    user: Annotated[str | None, typer.Option(help="One principal (admins only).")] = None,
    project: Annotated[str | None, typer.Option("--project", "-p", help="One project.")] = None,
    server: Annotated[str | None, typer.Option(help="One server.")] = None,
    outcome: Annotated[
        str | None, typer.Option(help="ok, tool_error, protocol_error, denied or timeout.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many records.")] = 500,
    summary: Annotated[
        bool, typer.Option("--summary", help="Calls, errors and p95 per user x tool.")
    ] = False,
    output: Annotated[
        str, typer.Option("--output", "-o", help="table, wide, json, yaml or jsonl.")
    ] = "table",
) -> None:
    """The audit trail: tool calls, prompt gets, resource reads and denied requests."""
    params = {
        key: value
        for key, value in {
            "since": since,
            "until": until,
            "user": user,
            "project": project,
            "server": server,
            "outcome": outcome,
        }.items()
        if value
    }
    api = client(ctx)
    if output == "jsonl":
        if summary:
            raise CLIError("--summary prints table, json or yaml")
        with api.stream(
            "GET", "/api/v1/audit", params={**params, "format": "jsonl", "limit": str(limit)}
        ) as chunks:
            for chunk in chunks:
                sys.stdout.write(chunk)
        return
    fmt = parse_format(output)
    if summary:
        data = api.get("/api/v1/audit/summary", params=params)
        if fmt in (Format.JSON, Format.YAML):
            emit("audit", data, fmt, many=False)
            return
        rows = [
            [
                row["principal"],
                row.get("server") or "-",
                row["name"] or row["method"],
                str(row["calls"]),
                str(row["errors"]),
                str(row["denied"]),
                "-" if row.get("p95Ms") is None else f"{row['p95Ms']:.1f}",
            ]
            for row in data["rows"]
        ]
        headers = ["USER", "SERVER", "NAME", "CALLS", "ERRORS", "DENIED", "P95 MS"]
        print_rows(headers, rows, empty=f"No audit records since {since}.")
        return
    data = api.get("/api/v1/audit", params={**params, "limit": str(limit)})
    if fmt in (Format.JSON, Format.YAML):
        emit("audit", data, fmt, many=False)
        return
    wide = fmt is Format.WIDE
    rows = []
    for item in data["items"]:
        row = [
            item["at"][:23].replace("T", " "),
            item["principal"],
            item["endpoint"],
            item.get("server") or "-",
            item["name"] or item["method"] or "-",
            item["outcome"]
            + (f" ({item['status']})" if item.get("status") else "")
            + (f" x{item['count']}" if item.get("count", 1) > 1 else ""),  # aggregated
            f"{item['durationMs']:.1f}",
        ]
        if wide:
            row += [
                item.get("source") or "-",
                item.get("requestId") or "-",
                item.get("traceId") or "-",
                (item.get("argsHash") or "-")[:16],
                (item.get("reason") or "-")[:80],
            ]
        rows.append(row)
    headers = ["TIME", "USER", "ENDPOINT", "SERVER", "NAME", "OUTCOME", "MS"]
    if wide:
        headers += ["SOURCE", "REQUEST ID", "TRACE ID", "ARGS SHA256", "REASON"]
    print_rows(headers, rows, empty=f"No audit records since {since}.")
    if data.get("truncated"):
        print(f"(the newest {limit}; more match: narrow the filters or raise --limit)")
