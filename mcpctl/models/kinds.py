"""The resource kinds of the API, and parsing of `{kind, metadata, spec}` documents."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import EmailStr, TypeAdapter, ValidationError

from mcpctl.models.base import Metadata, Model, Name, field_error
from mcpctl.models.project import ProjectSpec
from mcpctl.models.prompt import PromptSpec
from mcpctl.models.secret import SecretSpec
from mcpctl.models.server import ServerSpec
from mcpctl.models.template import TemplateSpec
from mcpctl.models.user import UserSpec

SpecT = TypeVar("SpecT", bound=Model)


class Resource(Model, Generic[SpecT]):
    kind: str
    metadata: Metadata
    spec: SpecT
    status: dict[str, Any] | None = None


@dataclass(frozen=True)
class Kind:
    name: str
    plural: str
    spec: type[Model]
    scoped: bool = False  # lives inside a project (metadata.project)
    named_by_email: bool = False

    def parse(self, raw: object) -> Resource[Any]:
        """Validate a document of this kind; errors are located (`spec.port`, `metadata.name`)."""
        if isinstance(raw, dict) and "kind" not in raw:
            raw = {"kind": self.name, **raw}
        resource = Resource[self.spec].model_validate(raw)  # type: ignore[name-defined]
        if resource.kind != self.name:
            raise field_error("Resource", "kind", f"expected kind {self.name}, got {resource.kind}")
        _check_name(self, resource.metadata)
        return resource


_NAME = TypeAdapter(Name)
_EMAIL = TypeAdapter(EmailStr)


def _check_name(kind: Kind, metadata: Metadata) -> None:
    try:
        (_EMAIL if kind.named_by_email else _NAME).validate_python(metadata.name)
    except ValidationError as error:
        raise field_error(
            "Resource", "metadata.name", error.errors()[0]["msg"], metadata.name
        ) from None
    if kind.scoped and metadata.project is None:
        raise field_error("Resource", "metadata.project", f"a {kind.name} belongs to a project")
    if not kind.scoped and metadata.project is not None:
        raise field_error("Resource", "metadata.project", f"a {kind.name} has no project")


SERVER = Kind("Server", "servers", ServerSpec)
PROJECT = Kind("Project", "projects", ProjectSpec)
PROMPT = Kind("Prompt", "prompts", PromptSpec, scoped=True)
TEMPLATE = Kind("Template", "templates", TemplateSpec)
USER = Kind("User", "users", UserSpec, named_by_email=True)
SECRET = Kind("Secret", "secrets", SecretSpec)

# Order matters for restore and apply: what others reference comes first.
KINDS: tuple[Kind, ...] = (USER, SECRET, SERVER, TEMPLATE, PROJECT, PROMPT)


def kind_named(word: str) -> Kind:
    """`server`, `servers` and `Server` all name the Server kind."""
    lowered = word.lower()
    for kind in KINDS:
        if lowered in (kind.name.lower(), kind.plural):
            return kind
    known = ", ".join(kind.plural for kind in KINDS)
    raise KeyError(f"unknown kind {word!r}; known kinds: {known}")
