"""What a project exposes of its servers, and who may call what (a project's `expose`,
`access` and `views`; applied by mcpctl/gateway/exposure.py).

    expose:
      github:
        tools: {allow: ["get_*", "list_*", "search_*"], deny: ["*_secret"],
                rename: {search_repositories: search},
                descriptions: {search: "Search the team's repositories"}}
        prompts: {deny: ["internal-*"]}
        resources: {allow: ["repo://team/*"]}
    access:
      - members: [group:readers]
        tools: ["*__get_*", "*__list_*"]
      - members: [alice@example.com]
        tools: ["*"]
        prompts: ["*"]
        resources: ["*"]
    views:
      - name: lite
        tools: ["github__search", "time__*"]

Globs are fnmatch patterns. Tool and prompt names in `access` and `views` are the project's
(`server__name`, after renames); resources are matched by URI.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from mcpctl.models.base import Model, Name
from mcpctl.models.members import RuleMember

Glob = str


class Filter(Model):
    """Which of a server's names (or resource URIs) are exposed: none listed in `allow` means
    all; `deny` wins."""

    allow: list[Glob] = Field(default_factory=list, max_length=256)
    deny: list[Glob] = Field(default_factory=list, max_length=256)


class ToolShaping(Filter):
    rename: dict[str, str] = Field(default_factory=dict, max_length=1024)  # theirs -> exposed
    descriptions: dict[str, str] = Field(default_factory=dict, max_length=1024)  # exposed ->

    @model_validator(mode="after")
    def _renames_are_unique(self) -> ToolShaping:
        exposed = list(self.rename.values())
        if len(set(exposed)) != len(exposed):
            raise ValueError("rename: two tools renamed to the same name")
        for new in exposed:
            if not new or "__" in new or len(new) > 128:
                raise ValueError(f"rename: {new!r} must be 1-128 characters without '__'")
        return self


class ServerExposure(Model):
    tools: ToolShaping = Field(default_factory=ToolShaping)
    prompts: Filter = Field(default_factory=Filter)
    resources: Filter = Field(default_factory=Filter)


class AccessRule(Model):
    """Members (emails, `group:<name>`, or `*` for every member) who may call these."""

    members: list[RuleMember] = Field(min_length=1, max_length=256)
    tools: list[Glob] = Field(default_factory=list, max_length=256)
    prompts: list[Glob] = Field(default_factory=list, max_length=256)
    resources: list[Glob] = Field(default_factory=list, max_length=256)


class View(Model):
    """A smaller endpoint of the project (`/mcp/projects/<project>/views/<name>`) for clients
    that take few tools: only these of the project's tools."""

    name: Name
    tools: list[Glob] = Field(min_length=1, max_length=256)
