"""A Prompt is served to a project's MCP clients as an MCP prompt."""

from __future__ import annotations

from pydantic import EmailStr, Field

from mcpctl.models.base import Model, Name


class PromptArgument(Model):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")
    description: str = ""
    required: bool = False


class PromptSpec(Model):
    description: str = Field(default="", max_length=4096)
    text: str = Field(min_length=1, max_length=1_000_000)
    arguments: list[PromptArgument] = Field(default_factory=list)
    owner: EmailStr | None = None


__all__ = ["Name", "PromptArgument", "PromptSpec"]
