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

A rename's new name belongs to the renamed tool: a tool of the server that already has that
name is hidden and cannot be called (gateway/exposure.py), so every listed name is one tool.
A rename to the same name, or two renames to one name, are refused.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, field_validator

from mcpctl.models.base import Model, Name
from mcpctl.models.members import RuleMember

Glob = str
MAX_TOOL_NAME = 128


def _exposed_name(new: str) -> str:
    if not new or "__" in new or len(new) > MAX_TOOL_NAME:
        raise ValueError(f"{new!r}: a new name is 1-{MAX_TOOL_NAME} characters without '__'")
    return new


ExposedName = Annotated[str, AfterValidator(_exposed_name)]


class Filter(Model):
    """Which of a server's names (or resource URIs) are exposed: none listed in `allow` means
    all; `deny` wins."""

    allow: list[Glob] = Field(default_factory=list, max_length=256)
    deny: list[Glob] = Field(default_factory=list, max_length=256)


class ToolShaping(Filter):
    # theirs -> exposed
    rename: dict[str, ExposedName] = Field(default_factory=dict, max_length=1024)
    descriptions: dict[str, str] = Field(default_factory=dict, max_length=1024)  # exposed ->

    @field_validator("rename")
    @classmethod
    def _renames_name_one_tool_each(cls, rename: dict[str, str]) -> dict[str, str]:
        same = sorted(old for old, new in rename.items() if old == new)
        if same:
            raise ValueError(f"{same[0]!r} is renamed to itself: leave it out")
        taken: dict[str, str] = {}
        for old, new in rename.items():
            if new in taken:
                raise ValueError(f"{taken[new]!r} and {old!r} are both renamed to {new!r}")
            taken[new] = old
        return rename


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
