"""`mcpctl`: get, describe, create, apply, delete, scale, backup and restore MCP resources."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from mcpctl import __version__
from mcpctl.cli import audit, backup, create, describe, login
from mcpctl.cli import config as config_commands
from mcpctl.cli.context import Invocation, client
from mcpctl.cli.documents import load_documents
from mcpctl.cli.errors import CLIError
from mcpctl.cli.output import Format, console, emit, parse_format, print_rows
from mcpctl.cli.paths import collection, item
from mcpctl.models.kinds import kind_named

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="mcpctl: manage MCP servers, projects and prompts through mcpd.",
)
app.add_typer(config_commands.app, name="config")
app.add_typer(create.app, name="create")
app.add_typer(backup.app, name="backup")
app.command("describe")(describe.describe)
app.command("restore")(backup.restore)
app.command("login")(login.login)
app.command("logout")(login.logout)
app.command("audit")(audit.audit)

OutputOption = Annotated[
    str, typer.Option("--output", "-o", help="table, wide, json or yaml.", show_default=True)
]
ProjectOption = Annotated[
    str | None, typer.Option("--project", "-p", help="The project (for prompts).")
]


def _version(value: bool) -> None:
    if value:
        console.print(f"mcpctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    server: Annotated[
        str | None, typer.Option(help="mcpd URL [MCPCTL_SERVER, then the config file].")
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="API token [MCPCTL_TOKEN, then the config file].")
    ] = None,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_version
        ),
    ] = False,
) -> None:
    ctx.obj = Invocation(server=server, token=token)


def _kind(word: str) -> Any:
    if word.lower() in ("instance", "instances", "token", "tokens"):
        return word.lower().rstrip("s") + "s"
    try:
        return kind_named(word)
    except KeyError as error:
        raise CLIError(error.args[0]) from None


@app.command()
def get(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="servers, instances, projects, prompts, ...")],
    name: Annotated[str | None, typer.Argument()] = None,
    output: OutputOption = "table",
    project: ProjectOption = None,
    user: Annotated[str | None, typer.Option(help="Whose tokens (default: yours).")] = None,
) -> None:
    """List resources, or show one."""
    fmt = parse_format(output)
    resolved = _kind(kind)
    api = client(ctx)
    if resolved == "instances":
        path = "/api/v1/instances" + (f"/{name}" if name else "")
        emit("instances", api.get(path), fmt, many=name is None)
        return
    if resolved == "tokens":
        email = user or api.get("/api/v1/whoami")["email"]
        emit("tokens", api.get(f"/api/v1/users/{email}/tokens"), fmt, many=True)
        return
    if name is None:
        emit(resolved.plural, api.get(collection(resolved, project)), fmt, many=True)
    else:
        emit(resolved.plural, api.get(item(resolved, name, project)), fmt, many=False)


@app.command()
def apply(
    ctx: typer.Context,
    filename: Annotated[
        list[str], typer.Option("--filename", "-f", help="YAML or JSON file(s); - for stdin.")
    ],
) -> None:
    """Create or update resources from files; applying twice changes nothing."""
    documents = [doc for path in filename for doc in load_documents(path)]
    api = client(ctx)
    for kind, resource, body in documents:
        project = resource.metadata.project
        response = api.put(item(kind, resource.metadata.name, project), body)
        outcome = response.headers.get("Mcpctl-Outcome", "configured")
        console.print(f"{kind.name.lower()}/{resource.metadata.name} {outcome}")


@app.command()
def delete(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument()],
    names: Annotated[list[str], typer.Argument(help="One or more names.")],
    project: ProjectOption = None,
) -> None:
    """Delete resources (deleting a server stops its instances)."""
    resolved = _kind(kind)
    api = client(ctx)
    for name in names:
        if resolved == "instances":
            api.delete(f"/api/v1/instances/{name}")
            console.print(f"instance/{name} deleted")
        elif resolved == "tokens":
            email = api.get("/api/v1/whoami")["email"]
            api.delete(f"/api/v1/users/{email}/tokens/{name}")
            console.print(f"token/{name} revoked")
        else:
            api.delete(item(resolved, name, project))
            console.print(f"{resolved.name.lower()}/{name} deleted")


@app.command()
def scale(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="server")],
    name: Annotated[str, typer.Argument()],
    replicas: Annotated[int, typer.Option(min=0, help="How many instances to run.")],
) -> None:
    """Set a server's replica count (0 stops it)."""
    if _kind(kind) is not kind_named("server"):
        raise CLIError("only servers can be scaled")
    api = client(ctx)
    doc = api.get(f"/api/v1/servers/{name}")
    doc["spec"]["replicas"] = replicas
    doc.pop("status", None)
    outcome = api.put(f"/api/v1/servers/{name}", doc).headers.get("Mcpctl-Outcome")
    console.print(
        f"server/{name} scaled to {replicas}" + (" (unchanged)" if outcome == "unchanged" else "")
    )


@app.command()
def logs(
    ctx: typer.Context,
    server: Annotated[str, typer.Argument(help="The server whose output to show.")],
    replica: Annotated[int, typer.Option(min=0, help="Which replica.")] = 0,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming.")] = False,
    tail: Annotated[int | None, typer.Option(min=0, help="Start with the last N lines.")] = None,
) -> None:
    """Print an instance's output (a process's stderr, or a pod's log)."""
    params: dict[str, str] = {"follow": str(follow).lower()}
    if tail is not None:
        params["tail"] = str(tail)
    api = client(ctx)
    with api.stream("GET", f"/api/v1/instances/{server}-{replica}/logs", params=params) as lines:
        for chunk in lines:
            sys.stdout.write(chunk)
            sys.stdout.flush()


@app.command()
def history(
    ctx: typer.Context,
    server: Annotated[str | None, typer.Argument(help="One server (default: all).")] = None,
    window: Annotated[str, typer.Option(help="How far back: 30m, 24h, 7d.")] = "24h",
    output: OutputOption = "table",
) -> None:
    """Restarts, crash reasons, uptime and MTBF per server over a window."""
    fmt = parse_format(output)
    params = {"window": window, **({"server": server} if server else {})}
    data = client(ctx).get("/api/v1/analytics/history", params=params)
    if fmt in (Format.JSON, Format.YAML):
        emit("history", data, fmt, many=False)
        return
    rows = [
        [
            row["server"],
            str(row["replicas"]),
            str(row["restarts"]),
            str(row["failedStarts"]),
            "-" if row["uptimePercent"] is None else f"{row['uptimePercent']:.2f}%",
            "-" if row["mtbfSeconds"] is None else f"{row['mtbfSeconds']:.0f}s",
            "; ".join(f"{r['count']}x {r['reason']}"[:60] for r in row["crashReasons"][:2]) or "-",
        ]
        for row in data["servers"]
    ]
    headers = ["SERVER", "REPLICAS", "RESTARTS", "FAILED", "UPTIME", "MTBF", "TOP REASONS"]
    print_rows(headers, rows, empty=f"No instance events in the last {window}.")


@app.command()
def whoami(ctx: typer.Context) -> None:
    """Show who the token belongs to."""
    me = client(ctx).get("/api/v1/whoami")
    groups = f"; groups: {', '.join(me['groups'])}" if me.get("groups") else ""
    console.print(f"{me['email']} ({me['role']}{groups})")


@app.command()
def version() -> None:
    """Print the mcpctl version."""
    console.print(f"mcpctl {__version__}")


def main(argv: list[str] | None = None) -> None:
    """Errors are one line and an exit code: 1 for what went wrong, 2 for a usage mistake (as
    click's own), 130 for ^C; never a traceback for the user's mistake."""
    try:
        app(args=argv, standalone_mode=False)
    except CLIError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except typer.TyperException as error:  # typer's own copy of click's usage errors
        print(f"error: {_one_line(error)}", file=sys.stderr)
        sys.exit(getattr(error, "exit_code", 1))


def _one_line(error: Exception) -> str:
    format_message = getattr(error, "format_message", None)
    text = format_message() if callable(format_message) else str(error)
    text = " ".join(str(text).split())
    context = getattr(error, "ctx", None)
    if getattr(error, "exit_code", 1) == 2 and context is not None:  # a usage mistake
        text += f" (see '{context.command_path} --help')"
    return text
