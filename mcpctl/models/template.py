"""Templates are server specs with parameters, instantiated into Servers."""

from __future__ import annotations

import json
import string
from typing import Any, Self

from pydantic import Field, model_validator

from mcpctl.models.base import Model, Name, field_error
from mcpctl.models.server import ServerSpec


class TemplateParameter(Model):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    description: str = ""
    required: bool = True
    default: str | None = None


class TemplateSpec(Model):
    """`server` is a ServerSpec whose strings may hold `${parameter}` placeholders."""

    description: str = Field(default="", max_length=4096)
    parameters: list[TemplateParameter] = Field(default_factory=list)
    server: dict[str, Any]

    @model_validator(mode="after")
    def _placeholders_declared(self) -> Self:
        declared = {p.name for p in self.parameters}
        used = placeholders(self.server)
        unknown = sorted(used - declared)
        if unknown:
            raise field_error(
                "TemplateSpec", "server", f"undeclared parameters: {', '.join(unknown)}"
            )
        return self

    def render(self, values: dict[str, str]) -> ServerSpec:
        """Substitute parameters and validate the result as a ServerSpec."""
        declared = {p.name: p for p in self.parameters}
        for name in values:
            if name not in declared:
                raise field_error("Instantiate", f"parameters.{name}", "unknown parameter")
        resolved: dict[str, str] = {}
        for param in self.parameters:
            value = values.get(param.name, param.default)
            if value is None:
                if param.required:
                    raise field_error("Instantiate", f"parameters.{param.name}", "required")
                value = ""
            resolved[param.name] = value
        return ServerSpec.model_validate(_substitute(self.server, resolved))


class InstantiateRequest(Model):
    name: Name
    parameters: dict[str, str] = Field(default_factory=dict)


def placeholders(tree: Any) -> set[str]:
    text = json.dumps(tree)
    return {
        named or braced
        for _, named, braced, _ in string.Template.pattern.findall(text)
        if named or braced
    }


def _substitute(tree: Any, values: dict[str, str]) -> Any:
    if isinstance(tree, str):
        return string.Template(tree).safe_substitute(values)
    if isinstance(tree, list):
        return [_substitute(item, values) for item in tree]
    if isinstance(tree, dict):
        return {key: _substitute(item, values) for key, item in tree.items()}
    return tree
