"""Projects group servers behind one MCP endpoint and give members access."""

from __future__ import annotations

from pydantic import Field, model_validator

from mcpctl.models.base import Model, Name
from mcpctl.models.exposure import AccessRule, ServerExposure, View
from mcpctl.models.members import GROUP_PREFIX, Member, group_of
from mcpctl.models.rate_limit import RateLimit
from mcpctl.models.user import Email

__all__ = ["GROUP_PREFIX", "Member", "ProjectSpec", "group_of"]


class ProjectSpec(Model):
    description: str = Field(default="", max_length=4096)
    owner: Email | None = None
    servers: list[Name] = Field(default_factory=list)
    # Users (emails) and groups of the OpenID provider (`group:platform`).
    members: list[Member] = Field(default_factory=list)
    rate_limit: RateLimit | None = None  # all callers together (gateway/rate_limit.py)
    # What the project exposes of each server, who may call what, and smaller endpoints
    # (models/exposure.py).
    expose: dict[Name, ServerExposure] = Field(default_factory=dict)
    access: list[AccessRule] = Field(default_factory=list, max_length=256)
    views: list[View] = Field(default_factory=list, max_length=64)

    @model_validator(mode="after")
    def _policy_names_what_exists(self) -> ProjectSpec:
        for server in self.expose:
            if server not in self.servers:
                raise ValueError(f"expose.{server}: {server!r} is not one of the servers")
        names = [view.name for view in self.views]
        if len(set(names)) != len(names):
            raise ValueError("views: two views have the same name")
        return self
