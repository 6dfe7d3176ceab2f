"""Printing resources: tables for humans, JSON and YAML for machines (and for `apply -f`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import yaml
from rich.console import Console

from mcpctl.cli import tables
from mcpctl.cli.errors import CLIError

# Names, descriptions and errors come from the store: never read them as markup, emoji codes
# or highlights. Styling is given explicitly (rich.text.Text, a table's header_style).
console = Console(soft_wrap=True, markup=False, emoji=False, highlight=False)

Row = Callable[[dict[str, Any]], list[str]]


class Format(StrEnum):
    TABLE = "table"
    WIDE = "wide"
    JSON = "json"
    YAML = "yaml"


def age(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    seconds = int((datetime.now(UTC) - datetime.fromisoformat(timestamp)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _source(spec: dict[str, Any]) -> str:
    for field in ("url", "image", "package"):
        if spec.get(field):
            return f"{field}:{spec[field]}"
    return "command:" + " ".join([spec.get("command", ""), *spec.get("args", [])])


def _server(doc: dict[str, Any]) -> list[str]:
    spec, status = doc["spec"], doc.get("status", {})
    ready = f"{status.get('ready', 0)}/{spec['replicas']}"
    return [
        doc["metadata"]["name"],
        spec["transport"],
        ready,
        age(doc["metadata"].get("createdAt")),
    ]


def _server_wide(doc: dict[str, Any]) -> list[str]:
    spec = doc["spec"]
    labels = ",".join(f"{k}={v}" for k, v in spec.get("labels", {}).items())
    return [*_server(doc), _source(spec), str(spec.get("port") or "-"), labels or "-"]


def _project(doc: dict[str, Any]) -> list[str]:
    spec = doc["spec"]
    return [
        doc["metadata"]["name"],
        spec.get("owner", "-"),
        ",".join(spec.get("servers", [])) or "-",
        str(len(spec.get("members", []))),
        age(doc["metadata"].get("createdAt")),
    ]


def _prompt(doc: dict[str, Any]) -> list[str]:
    spec = doc["spec"]
    arguments = ",".join(a["name"] for a in spec.get("arguments", []))
    return [
        doc["metadata"].get("project", "-"),
        doc["metadata"]["name"],
        spec.get("owner", "-"),
        arguments or "-",
        age(doc["metadata"].get("createdAt")),
    ]


def _template(doc: dict[str, Any]) -> list[str]:
    spec = doc["spec"]
    parameters = ",".join(p["name"] for p in spec.get("parameters", []))
    return [doc["metadata"]["name"], parameters or "-", spec.get("description", "")[:60]]


def _user(doc: dict[str, Any]) -> list[str]:
    spec = doc["spec"]
    return [
        doc["metadata"]["name"],
        spec["role"],
        spec.get("displayName", ""),
        age(doc["metadata"].get("createdAt")),
    ]


def _secret(doc: dict[str, Any]) -> list[str]:
    return [
        doc["metadata"]["name"],
        ",".join(doc["spec"]["data"]) or "-",
        age(doc["metadata"].get("createdAt")),
    ]


def _instance(doc: dict[str, Any]) -> list[str]:
    return [
        f"{doc['server']}-{doc['replica']}",
        doc["server"],
        doc["status"],
        str(doc.get("restartCount", 0)),
        age(doc.get("startedAt")),
    ]


def _instance_wide(doc: dict[str, Any]) -> list[str]:
    where = doc.get("pod") or (f"pid {doc['pid']}" if doc.get("pid") else "-")
    return [*_instance(doc), where, doc.get("address", "-"), (doc.get("lastError") or "-")[:80]]


def _token(doc: dict[str, Any]) -> list[str]:
    return [
        doc["id"],
        doc["name"],
        doc["prefix"] + "…",
        age(doc.get("createdAt")),
        doc.get("expiresAt") or "never",
        age(doc.get("lastUsedAt")) if doc.get("lastUsedAt") else "never",
    ]


COLUMNS: dict[str, tuple[list[str], Row, list[str], Row]] = {
    "servers": (
        ["NAME", "TRANSPORT", "READY", "AGE"],
        _server,
        ["SOURCE", "PORT", "LABELS"],
        _server_wide,
    ),
    "projects": (["NAME", "OWNER", "SERVERS", "MEMBERS", "AGE"], _project, [], _project),
    "prompts": (["PROJECT", "NAME", "OWNER", "ARGUMENTS", "AGE"], _prompt, [], _prompt),
    "templates": (["NAME", "PARAMETERS", "DESCRIPTION"], _template, [], _template),
    "users": (["EMAIL", "ROLE", "NAME", "AGE"], _user, [], _user),
    "secrets": (["NAME", "KEYS", "AGE"], _secret, [], _secret),
    "instances": (
        ["NAME", "SERVER", "STATUS", "RESTARTS", "AGE"],
        _instance,
        ["WHERE", "ADDRESS", "LAST ERROR"],
        _instance_wide,
    ),
    "tokens": (["ID", "NAME", "PREFIX", "CREATED", "EXPIRES", "LAST USED"], _token, [], _token),
}


def print_rows(headers: list[str], rows: list[list[str]], empty: str) -> None:
    if not rows:
        console.print(empty)
        return
    print("\n".join(tables.render(headers, rows, tables.terminal_width())))


def table(kind: str, items: Sequence[dict[str, Any]], wide: bool = False) -> None:
    headers, row, extra, wide_row = COLUMNS[kind]
    rows = [wide_row(item) if wide else row(item) for item in items]
    print_rows(headers + (extra if wide else []), rows, empty=f"No {kind} found.")


def emit(kind: str, data: Any, fmt: Format, many: bool) -> None:
    if fmt is Format.JSON:
        print(json.dumps(data, indent=2))
    elif fmt is Format.YAML:
        if many and isinstance(data, dict) and "items" in data:
            print(yaml.safe_dump_all(data["items"], sort_keys=False), end="")
        else:
            print(yaml.safe_dump(data, sort_keys=False), end="")
    else:
        items = data["items"] if many else [data]
        table(kind, items, wide=fmt is Format.WIDE)


def parse_format(value: str) -> Format:
    try:
        return Format(value)
    except ValueError:
        raise CLIError(f"unknown output format {value!r}; use table, wide, json or yaml") from None
