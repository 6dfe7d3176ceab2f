"""Where the CLI finds mcpd: flags, then MCPCTL_SERVER/MCPCTL_TOKEN, then its config file
(the token of `mcpctl login` first, then the API token)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from mcpctl.cli import oauth
from mcpctl.cli.errors import CLIError

DEFAULT_SERVER = "http://127.0.0.1:8420"


def config_path() -> Path:
    if explicit := os.environ.get("MCPCTL_CONFIG"):
        return Path(explicit)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "mcpctl" / "config.yaml"


def read_config() -> dict[str, str]:
    path = config_path()
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise CLIError(f"{path} is not valid YAML: {error}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise CLIError(f"{path} must hold a mapping with 'server' and 'token'")
    return {str(k): str(v) for k, v in data.items() if v is not None}


def write_config(values: dict[str, str]) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        yaml.safe_dump(values, file, sort_keys=True)
    return path


def local_admin_token() -> str | None:
    """The token a local mcpd saved on first start, for talking to it on this machine."""
    data_dir = Path(
        os.environ.get("MCPD_DATA_DIR") or Path.home() / ".local" / "share" / "mcpctl"
    ).expanduser()
    path = data_dir / "admin-token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True)
class Target:
    server: str
    token: str | None


def resolve(server_flag: str | None, token_flag: str | None) -> Target:
    config = read_config()
    server = (
        server_flag or os.environ.get("MCPCTL_SERVER") or config.get("server") or DEFAULT_SERVER
    ).rstrip("/")
    token = token_flag or os.environ.get("MCPCTL_TOKEN")
    if token is None and config.get("oidc_access_token") and config.get("oidc_server") == server:
        # `mcpctl login`'s token (refreshed and saved again when it is about to expire).
        token, refreshed = oauth.access_token(config)
        if refreshed is not None:
            write_config(refreshed)
    token = token or config.get("token")
    if token is None and server.rstrip("/") == DEFAULT_SERVER:
        token = local_admin_token()
    return Target(server.rstrip("/"), token)
