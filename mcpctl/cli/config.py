"""`mcpctl config`: where mcpd is and which token to use."""

from __future__ import annotations

from typing import Annotated

import typer

from mcpctl.cli.output import console
from mcpctl.cli.settings import config_path, read_config, resolve, write_config

app = typer.Typer(no_args_is_help=True, help="Configure which mcpd to talk to.")


@app.command("set-server")
def set_server(
    url: Annotated[str, typer.Argument(help="mcpd's URL, e.g. http://127.0.0.1:8420")],
    token: Annotated[str | None, typer.Option(help="API token to send.")] = None,
) -> None:
    """Save mcpd's URL (and token) in the config file."""
    values = read_config()
    values["server"] = url.rstrip("/")
    if token is not None:
        values["token"] = token
    path = write_config(values)
    console.print(f"saved to {path}")


@app.command("view")
def view(ctx: typer.Context) -> None:
    """Show the server and where the settings come from (the token is masked)."""
    invocation = ctx.find_root().obj
    target = resolve(invocation.server, invocation.token)
    masked = (target.token[:8] + "…") if target.token else "(none)"
    console.print(f"config file: {config_path()}")
    console.print(f"server:      {target.server}")
    console.print(f"token:       {masked}")
