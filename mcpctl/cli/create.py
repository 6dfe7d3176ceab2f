"""`mcpctl create KIND NAME ...`: imperative creation from flags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from mcpctl.cli.context import client
from mcpctl.cli.errors import CLIError
from mcpctl.cli.output import console
from mcpctl.models.kinds import PROJECT, PROMPT, SECRET, SERVER, USER, Kind

app = typer.Typer(no_args_is_help=True, help="Create a resource from flags.")

Pairs = Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable.")]


def pairs(values: list[str] | None, option: str) -> dict[str, str]:
    result = {}
    for value in values or []:
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise CLIError(f"--{option} expects KEY=VALUE, got {value!r}")
        result[key] = item
    return result


def _post(ctx: typer.Context, kind: Kind, doc: dict[str, Any], path: str | None = None) -> None:
    try:
        kind.parse(doc)
    except ValidationError as error:
        detail = error.errors(include_url=False)[0]
        field = ".".join(str(part) for part in detail["loc"])
        raise CLIError(f"{field}: {detail['msg'].removeprefix('Value error, ')}") from None
    client(ctx).post(path or f"/api/v1/{kind.plural}", doc)
    console.print(f"{kind.name.lower()}/{doc['metadata']['name']} created")


@app.command()
def server(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    args: Annotated[list[str] | None, typer.Argument(help="Arguments, after --.")] = None,
    image: Annotated[str | None, typer.Option(help="Container image to run.")] = None,
    package: Annotated[str | None, typer.Option(help="npm or PyPI package.")] = None,
    runtime: Annotated[str | None, typer.Option(help="node (npx) or python (uvx).")] = None,
    command: Annotated[str | None, typer.Option(help="Command to run.")] = None,
    url: Annotated[str | None, typer.Option(help="URL of an external MCP server.")] = None,
    transport: Annotated[str, typer.Option(help="stdio, sse or streamable-http.")] = "stdio",
    port: Annotated[int | None, typer.Option(help="Port of an HTTP server.")] = None,
    path: Annotated[str | None, typer.Option(help="MCP path of an HTTP server.")] = None,
    replicas: Annotated[int, typer.Option(help="Instances to run.")] = 1,
    env: Pairs = None,
    secret_env: Annotated[
        list[str] | None, typer.Option(help="VAR=SECRET:KEY, from a secret; repeatable.")
    ] = None,
    label: Pairs = None,
    description: Annotated[str, typer.Option()] = "",
    from_template: Annotated[
        str | None, typer.Option(help="Instantiate this template instead.")
    ] = None,
    param: Pairs = None,
) -> None:
    """Create a server from an image, a package, a command or a URL."""
    if from_template is not None:
        body = {"name": name, "parameters": pairs(param, "param")}
        client(ctx).post(f"/api/v1/templates/{from_template}/instantiate", body)
        console.print(f"server/{name} created from template {from_template}")
        return
    env_list: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in pairs(env, "env").items()]
    for var, ref in pairs(secret_env, "secret-env").items():
        secret, sep, key = ref.partition(":")
        if not sep:
            raise CLIError(f"--secret-env expects VAR=SECRET:KEY, got {var}={ref}")
        env_list.append({"name": var, "secretRef": {"name": secret, "key": key}})
    spec = {
        "description": description,
        "transport": transport,
        "image": image,
        "package": package,
        "runtime": runtime,
        "command": command,
        "url": url,
        "args": args or [],
        "port": port,
        "path": path,
        "replicas": replicas,
        "env": env_list,
        "labels": pairs(label, "label"),
    }
    spec = {k: v for k, v in spec.items() if v is not None}
    _post(ctx, SERVER, {"kind": "Server", "metadata": {"name": name}, "spec": spec})


@app.command()
def secret(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    from_literal: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable.")] = None,
    from_file: Annotated[list[str] | None, typer.Option(help="KEY=PATH, repeatable.")] = None,
) -> None:
    """Create a secret; its values are never shown again."""
    data = pairs(from_literal, "from-literal")
    for key, file in pairs(from_file, "from-file").items():
        try:
            data[key] = Path(file).read_text()
        except OSError as error:
            raise CLIError(f"cannot read {file}: {error.strerror}") from None
    if not data:
        raise CLIError("give at least one --from-literal KEY=VALUE or --from-file KEY=PATH")
    _post(ctx, SECRET, {"kind": "Secret", "metadata": {"name": name}, "spec": {"data": data}})


@app.command()
def project(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    server: Annotated[list[str] | None, typer.Option(help="Member server; repeatable.")] = None,
    member: Annotated[list[str] | None, typer.Option(help="Member user's email.")] = None,
    owner: Annotated[str | None, typer.Option(help="Owner's email (default: you).")] = None,
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Create a project of servers."""
    spec: dict[str, Any] = {
        "description": description,
        "servers": server or [],
        "members": member or [],
    }
    if owner:
        spec["owner"] = owner
    _post(ctx, PROJECT, {"kind": "Project", "metadata": {"name": name}, "spec": spec})


@app.command()
def user(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument()],
    role: Annotated[str, typer.Option(help="admin or member.")] = "member",
    display_name: Annotated[str, typer.Option()] = "",
) -> None:
    """Create a user (then give them a token with `create token --user`)."""
    spec = {"role": role, "displayName": display_name}
    _post(ctx, USER, {"kind": "User", "metadata": {"name": email}, "spec": spec})


@app.command()
def prompt(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    project: Annotated[str, typer.Option("--project", "-p", help="The project it belongs to.")],
    text: Annotated[
        str | None,
        typer.Option(
            help="Prompt text; {arg} marks an argument (--argument arg:required: required)."
        ),
    ] = None,
    file: Annotated[str | None, typer.Option(help="Read the text from a file.")] = None,
    argument: Annotated[
        list[str] | None, typer.Option(help="NAME or NAME:required; repeatable.")
    ] = None,
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Create a prompt in a project."""
    if (text is None) == (file is None):
        raise CLIError("give exactly one of --text or --file")
    if file is not None:
        try:
            text = Path(file).read_text()
        except OSError as error:
            raise CLIError(f"cannot read {file}: {error.strerror}") from None
    arguments = []
    for spec_arg in argument or []:
        arg_name, _, flag = spec_arg.partition(":")
        arguments.append({"name": arg_name, "required": flag == "required"})
    doc = {
        "kind": "Prompt",
        "metadata": {"name": name, "project": project},
        "spec": {"text": text, "description": description, "arguments": arguments},
    }
    _post(ctx, PROMPT, doc, f"/api/v1/projects/{project}/prompts")


@app.command()
def token(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option(help="Whose token (default: yours).")] = None,
    name: Annotated[str, typer.Option(help="A label for the token.")] = "default",
    expires_in_days: Annotated[int | None, typer.Option(min=1)] = None,
) -> None:
    """Create an API token and print it (it is shown only once)."""
    api = client(ctx)
    email = user or api.get("/api/v1/whoami")["email"]
    body: dict[str, Any] = {"name": name}
    if expires_in_days is not None:
        body["expiresAt"] = (datetime.now(UTC) + timedelta(days=expires_in_days)).isoformat()
    created = api.post(f"/api/v1/users/{email}/tokens", body).json()
    console.print(created["token"], highlight=False)
