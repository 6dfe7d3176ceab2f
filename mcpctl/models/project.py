"""Projects group servers behind one MCP endpoint and give members access."""

from __future__ import annotations

from pydantic import Field

from mcpctl.models.base import Model, Name
from mcpctl.models.user import Email


class ProjectSpec(Model):
    description: str = Field(default="", max_length=4096)
    owner: Email | None = None
    servers: list[Name] = Field(default_factory=list)
    members: list[Email] = Field(default_factory=list)
