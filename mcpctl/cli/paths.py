"""REST paths of resources, shared by every command."""

from __future__ import annotations

from urllib.parse import quote

from mcpctl.cli.errors import CLIError
from mcpctl.models.kinds import Kind


def collection(kind: Kind, project: str | None) -> str:
    if kind.scoped:
        if project is None:
            return f"/api/v1/{kind.plural}"
        return f"/api/v1/projects/{quote(project, safe='')}/{kind.plural}"
    return f"/api/v1/{kind.plural}"


def item(kind: Kind, name: str, project: str | None) -> str:
    if kind.scoped and project is None:
        raise CLIError(f"{kind.plural} live in a project: add --project NAME")
    return f"{collection(kind, project)}/{quote(name, safe='')}"
