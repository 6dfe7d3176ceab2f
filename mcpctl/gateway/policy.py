"""Who may do what: admins everything; members read their projects and manage their prompts."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException

from mcpctl.gateway.auth import Principal
from mcpctl.models.kinds import PROJECT, PROMPT, Kind, Resource
from mcpctl.models.project import GROUP_PREFIX
from mcpctl.store.errors import NotFound
from mcpctl.store.repositories.projects import PROJECTS


def forbidden(message: str) -> HTTPException:
    return HTTPException(403, message)


def in_project(principal: Principal, project: Resource[Any]) -> bool:
    """Admins, the owner, members by email, and members of a `group:<name>` member (the
    groups of the OpenID provider's token)."""
    if principal.is_admin or principal.email == project.spec.owner:
        return True
    members = project.spec.members
    return principal.email in members or any(
        GROUP_PREFIX + group in members for group in principal.groups
    )


def can_read(session: Session, principal: Principal, resource: Resource[Any]) -> bool:
    if principal.is_admin:
        return True
    if resource.kind == PROJECT.name:
        return in_project(principal, resource)
    if resource.kind == PROMPT.name:
        assert resource.metadata.project is not None
        return in_project(principal, PROJECTS.get(session, resource.metadata.project))
    return False


def require_read_kind(principal: Principal, kind: Kind) -> None:
    """Members may list only projects and prompts (filtered to theirs)."""
    if not principal.is_admin and kind not in (PROJECT, PROMPT):
        raise forbidden(f"members may not read {kind.plural}")


def require_admin(principal: Principal, what: str) -> None:
    if not principal.is_admin:
        raise forbidden(f"only admins may {what}")


def require_project_visible(session: Session, principal: Principal, project: str) -> None:
    """A project the principal is not in answers exactly like a missing one: nobody learns
    which projects exist."""
    found = PROJECTS.get(session, project)  # NotFound when missing
    if not in_project(principal, found):
        raise NotFound(f"project {project!r} not found")


def require_prompt_write(
    session: Session, principal: Principal, project: str, existing: Resource[Any] | None
) -> None:
    """A member writes prompts only in a project of theirs, and only prompts they own."""
    if principal.is_admin:
        return
    require_project_visible(session, principal, project)
    if existing is not None and existing.spec.owner != principal.email:
        raise forbidden(f"prompt {existing.metadata.name!r} belongs to {existing.spec.owner}")
