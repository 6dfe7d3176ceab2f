"""A Prompt is served to a project's MCP clients as an MCP prompt."""

from __future__ import annotations

import re
from typing import Self

from pydantic import EmailStr, Field, model_validator

from mcpctl.models.base import Model, Name

# `{name}` in a prompt's text is where the argument `name` goes (gateway/targets.render_prompt).
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")


class PromptArgument(Model):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")
    description: str = ""
    required: bool = False


class PromptSpec(Model):
    description: str = Field(default="", max_length=4096)
    text: str = Field(min_length=1, max_length=1_000_000)
    arguments: list[PromptArgument] = Field(default_factory=list)
    owner: EmailStr | None = None

    @model_validator(mode="after")
    def _declare_placeholders(self) -> Self:
        """A `{name}` the text uses is an argument (optional unless declared required): before,
        one not listed in `arguments` was neither listed to clients nor filled in."""
        declared = {argument.name for argument in self.arguments}
        for name in dict.fromkeys(PLACEHOLDER.findall(self.text)):
            if name not in declared and len(name) <= 128:
                self.arguments.append(PromptArgument(name=name))
        return self


__all__ = ["Name", "PromptArgument", "PromptSpec"]
