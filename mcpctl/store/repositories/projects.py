"""Projects (with member servers and users) and the prompts inside them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from mcpctl.models.kinds import PROJECT, PROMPT, Resource
from mcpctl.models.project import GROUP_PREFIX, group_of
from mcpctl.models.user import normalise_email
from mcpctl.store.errors import InvalidReference, NotFound
from mcpctl.store.repositories.base import Outcome, Repository, document, remove, spec_json
from mcpctl.store.tables import (
    ProjectGroupRow,
    ProjectPolicyRow,
    ProjectRateLimitRow,
    ProjectRow,
    ProjectServerRow,
    PromptRow,
    ServerRow,
    UserRow,
    utcnow,
)


def _user(session: Session, email: str, field: str) -> UserRow:
    email = normalise_email(email)
    row = session.scalar(select(UserRow).where(UserRow.email == email))
    if row is None:
        raise InvalidReference(f"{field}: user {email!r} not found", field)
    return row


def find_project(session: Session, name: str) -> ProjectRow:
    row = session.scalar(select(ProjectRow).where(ProjectRow.name == name))
    if row is None:
        raise NotFound(f"project {name!r} not found")
    return row


def _rate_limit(row: ProjectRow) -> ProjectRateLimitRow | None:
    session = object_session(row)
    return None if session is None else session.get(ProjectRateLimitRow, row.id)


POLICY_FIELDS = {"expose", "access", "views"}


def _policy(row: ProjectRow) -> ProjectPolicyRow | None:
    session = object_session(row)
    return None if session is None else session.get(ProjectPolicyRow, row.id)


def _set_policy(session: Session, row: ProjectRow, spec: Any) -> None:
    document = spec.model_dump(
        mode="json", by_alias=True, exclude_defaults=True, include=POLICY_FIELDS
    )
    existing = session.get(ProjectPolicyRow, row.id)
    if not document:
        if existing is not None:
            session.delete(existing)
    elif existing is None:
        session.add(ProjectPolicyRow(project_id=row.id, document=document))
    else:
        existing.document = document


def _set_rate_limit(session: Session, row: ProjectRow, limit: Any) -> None:
    existing = session.get(ProjectRateLimitRow, row.id)
    if limit is None:
        if existing is not None:
            session.delete(existing)
    elif existing is None:
        session.add(
            ProjectRateLimitRow(project_id=row.id, per_minute=limit.per_minute, burst=limit.burst)
        )
    else:
        existing.per_minute, existing.burst = limit.per_minute, limit.burst


class ProjectRepository(Repository):
    kind = PROJECT

    def to_resource(self, row: ProjectRow) -> Resource[Any]:
        spec: dict[str, Any] = {
            "description": row.description,
            "owner": row.owner.email,
            "servers": [server.name for server in row.servers],
            "members": [
                *(member.email for member in row.members),
                *(GROUP_PREFIX + group.name for group in row.groups),
            ],
        }
        limit = _rate_limit(row)  # audit & rate limits: a table of their own
        if limit is not None:
            spec["rateLimit"] = {"perMinute": limit.per_minute, "burst": limit.burst}
        policy = _policy(row)  # expose, access, views: one document of their own
        if policy is not None:
            spec.update(policy.document)
        return document(PROJECT, row.name, spec, row.created_at, row.updated_at)

    def list(self, session: Session, project: str | None = None) -> list[Resource[Any]]:
        rows = session.scalars(select(ProjectRow).order_by(ProjectRow.name))
        return [self.to_resource(row) for row in rows]

    def get(self, session: Session, name: str, project: str | None = None) -> Resource[Any]:
        return self.to_resource(find_project(session, name))

    def apply(self, session: Session, resource: Resource[Any], actor: str) -> Outcome:
        spec = resource.spec
        owner = _user(session, spec.owner or actor, "spec.owner")
        servers = []
        for index, name in enumerate(dict.fromkeys(spec.servers)):
            server = session.scalar(select(ServerRow).where(ServerRow.name == name))
            if server is None:
                raise InvalidReference(
                    f"spec.servers.{index}: server {name!r} not found", f"spec.servers.{index}"
                )
            servers.append(server)
        members = [
            _user(session, email, f"spec.members.{index}")
            for index, email in enumerate(dict.fromkeys(spec.members))
            if group_of(email) is None
        ]
        groups = sorted({group for member in spec.members if (group := group_of(member))})
        row = session.scalar(select(ProjectRow).where(ProjectRow.name == resource.metadata.name))
        if row is None:
            row = ProjectRow(name=resource.metadata.name, owner=owner)
            session.add(row)
            outcome = Outcome.CREATED
        else:
            before = spec_json(self.to_resource(row).spec)
            outcome = Outcome.CONFIGURED
        row.description = spec.description
        row.owner = owner
        row.members = members
        if [group.name for group in row.groups] != groups:
            row.groups = [ProjectGroupRow(name=group) for group in groups]
        session.flush()
        _set_rate_limit(session, row, spec.rate_limit)
        _set_policy(session, row, spec)
        session.query(ProjectServerRow).filter_by(project_id=row.id).delete()
        for position, server in enumerate(servers):
            session.add(ProjectServerRow(project_id=row.id, server_id=server.id, position=position))
        session.flush()
        session.expire(row, ["servers"])  # reloaded from project_servers, in the new order
        if outcome is Outcome.CONFIGURED:
            if spec_json(self.to_resource(row).spec) == before:
                return Outcome.UNCHANGED
            row.updated_at = utcnow()  # membership lives in other tables: mark the change here
            session.flush()
        return outcome

    def delete(self, session: Session, name: str, project: str | None = None) -> None:
        remove(session, find_project(session, name), f"project {name!r}")


class PromptRepository(Repository):
    kind = PROMPT

    def to_resource(self, row: PromptRow) -> Resource[Any]:
        spec = {**row.spec, "owner": row.owner.email}
        return document(PROMPT, row.name, spec, row.created_at, row.updated_at, row.project.name)

    def find(self, session: Session, name: str, project: str | None) -> PromptRow:
        assert project is not None, "prompts live in a project"
        project_row = find_project(session, project)
        row = session.scalar(
            select(PromptRow).where(PromptRow.project_id == project_row.id, PromptRow.name == name)
        )
        if row is None:
            raise NotFound(f"prompt {name!r} not found in project {project!r}")
        return row

    def list(self, session: Session, project: str | None = None) -> list[Resource[Any]]:
        query = select(PromptRow).join(ProjectRow).order_by(ProjectRow.name, PromptRow.name)
        if project is not None:
            query = query.where(PromptRow.project_id == find_project(session, project).id)
        return [self.to_resource(row) for row in session.scalars(query)]

    def get(self, session: Session, name: str, project: str | None = None) -> Resource[Any]:
        return self.to_resource(self.find(session, name, project))

    def apply(self, session: Session, resource: Resource[Any], actor: str) -> Outcome:
        project_name = resource.metadata.project
        project = session.scalar(select(ProjectRow).where(ProjectRow.name == project_name))
        if project is None:
            raise InvalidReference(
                f"metadata.project: project {project_name!r} not found", "metadata.project"
            )
        owner = _user(session, resource.spec.owner or actor, "spec.owner")
        spec = spec_json(resource.spec)
        spec.pop("owner")
        row = session.scalar(
            select(PromptRow).where(
                PromptRow.project_id == project.id, PromptRow.name == resource.metadata.name
            )
        )
        if row is None:
            session.add(
                PromptRow(project=project, name=resource.metadata.name, owner=owner, spec=spec)
            )
            session.flush()
            return Outcome.CREATED
        if row.spec == spec and row.owner_id == owner.id:
            return Outcome.UNCHANGED
        row.spec = spec
        row.owner = owner
        session.flush()
        return Outcome.CONFIGURED

    def delete(self, session: Session, name: str, project: str | None = None) -> None:
        row = self.find(session, name, project)
        remove(session, row, f"prompt {name!r} in project {project!r}")


PROJECTS = ProjectRepository()
PROMPTS = PromptRepository()
