"""`mcpctl describe`: one resource in full, for people."""

from __future__ import annotations

from typing import Annotated, Any

import typer
import yaml
from rich.text import Text

from mcpctl.cli.context import client
from mcpctl.cli.errors import CLIError
from mcpctl.cli.output import age, console, table
from mcpctl.cli.paths import item
from mcpctl.models.kinds import SERVER, kind_named


def _env_line(var: dict[str, Any]) -> str:
    if "secretRef" in var:
        ref = var["secretRef"]
        return f"{var['name']}=<secret {ref['name']}:{ref['key']}>"
    return f"{var['name']}={var.get('value', '')}"


def _server(doc: dict[str, Any]) -> None:
    spec, meta, status = doc["spec"], doc["metadata"], doc.get("status", {})
    source = next((f for f in ("url", "image", "package") if spec.get(f)), "command")
    rows = [
        ("Name", meta["name"]),
        ("Description", spec.get("description") or "-"),
        ("Source", f"{source} {spec.get(source, '')}".strip()),
        ("Runtime", spec.get("runtime") or "-"),
        ("Command", " ".join([spec.get("command") or "", *spec.get("args", [])]).strip() or "-"),
        ("Transport", spec["transport"]),
        ("Port", str(spec.get("port") or "-")),
        ("Path", spec.get("path") or "-"),
        ("Replicas", f"{status.get('ready', 0)} ready / {spec['replicas']} desired"),
        ("Env", ", ".join(_env_line(v) for v in spec.get("env", [])) or "-"),
        ("Resources", yaml.safe_dump(spec.get("resources"), default_flow_style=True).strip()),
        ("Node selector", ",".join(f"{k}={v}" for k, v in spec["nodeSelector"].items()) or "-"),
        ("Labels", ",".join(f"{k}={v}" for k, v in spec["labels"].items()) or "-"),
        ("Created", f"{meta.get('createdAt', '-')} ({age(meta.get('createdAt'))} ago)"),
        ("Updated", meta.get("updatedAt", "-")),
    ]
    width = max(len(label) for label, _ in rows) + 1
    for label, value in rows:  # values are stored text: printed as they are, never as markup
        console.print(Text.assemble((f"{label + ':':<{width}}", "bold"), " ", value))
    console.print()
    console.print(Text("Instances:", style="bold"))
    table("instances", status.get("instances", []), wide=True)


def describe(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="server, project, prompt, ...")],
    name: Annotated[str, typer.Argument()],
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
) -> None:
    """Show one resource in detail."""
    try:
        resolved = kind_named(kind)
    except KeyError as error:
        raise CLIError(error.args[0]) from None
    doc = client(ctx).get(item(resolved, name, project))
    if resolved is SERVER:
        _server(doc)
    else:
        console.print(Text(yaml.safe_dump(doc, sort_keys=False)), end="")
