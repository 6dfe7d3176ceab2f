"""Projects group servers behind one MCP endpoint and give members access."""

from __future__ import annotations

from pydantic import EmailStr, Field

from mcpctl.models.base import Model, Name


class ProjectSpec(Model):
    description: str = Field(default="", max_length=4096)
    owner: EmailStr | None = None
    servers: list[Name] = Field(default_factory=list)
    members: list[EmailStr] = Field(default_factory=list)
