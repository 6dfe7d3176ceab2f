"""Kinds stored as a name and a JSON spec: servers, templates, users."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mcpctl.models.kinds import SERVER, TEMPLATE, USER, Kind, Resource
from mcpctl.models.user import SYSTEM_USER_EMAIL, Role, normalise_email
from mcpctl.store.errors import Conflict, NotFound
from mcpctl.store.repositories.base import Outcome, Repository, document, remove, spec_json
from mcpctl.store.tables import ProjectRow, PromptRow, ServerRow, TemplateRow, UserRow


class SpecRepository(Repository):
    def __init__(self, kind: Kind, row: type[Any], name_column: str = "name") -> None:
        self.kind = kind
        self.row = row
        self.name_column = name_column

    def _column(self) -> Any:
        return getattr(self.row, self.name_column)

    def find(self, session: Session, name: str) -> Any:
        row = session.scalar(select(self.row).where(self._column() == name))
        if row is None:
            raise NotFound(f"{self.kind.name.lower()} {name!r} not found")
        return row

    def to_resource(self, row: Any) -> Resource[Any]:
        name = getattr(row, self.name_column)
        return document(self.kind, name, row.spec, row.created_at, row.updated_at)

    def list(self, session: Session, project: str | None = None) -> list[Resource[Any]]:
        rows = session.scalars(select(self.row).order_by(self._column()))
        return [self.to_resource(row) for row in rows]

    def get(self, session: Session, name: str, project: str | None = None) -> Resource[Any]:
        return self.to_resource(self.find(session, name))

    def apply(self, session: Session, resource: Resource[Any], actor: str) -> Outcome:
        name = resource.metadata.name
        spec = spec_json(resource.spec)
        row = session.scalar(select(self.row).where(self._column() == name))
        if row is None:
            session.add(self.row(**{self.name_column: name, "spec": spec}))
            session.flush()
            return Outcome.CREATED
        if row.spec == spec:
            return Outcome.UNCHANGED
        self.changed(row, spec)
        session.flush()
        return Outcome.CONFIGURED

    def changed(self, row: Any, spec: dict[str, Any]) -> None:
        row.spec = spec

    def delete(self, session: Session, name: str, project: str | None = None) -> None:
        remove(session, self.find(session, name), f"{self.kind.name.lower()} {name!r}")


class ServerRepository(SpecRepository):
    def __init__(self) -> None:
        super().__init__(SERVER, ServerRow)

    def changed(self, row: Any, spec: dict[str, Any]) -> None:
        row.spec = spec
        row.generation += 1


class UserRepository(SpecRepository):
    """Users are named by their email, always in its normalised form."""

    def __init__(self) -> None:
        super().__init__(USER, UserRow, name_column="email")

    def find(self, session: Session, name: str) -> Any:
        return super().find(session, normalise_email(name))

    def put(self, session: Session, resource: Resource[Any], actor: str) -> Outcome:
        email = normalise_email(resource.metadata.name)
        metadata = resource.metadata.model_copy(update={"name": email})
        resource = resource.model_copy(update={"metadata": metadata})
        if email == SYSTEM_USER_EMAIL and resource.spec.role is not Role.ADMIN:
            raise Conflict(
                f"spec.role: the system user {SYSTEM_USER_EMAIL} cannot be demoted: it owns "
                "what has no owner and holds the bootstrap admin token",
                "spec.role",
            )
        return super().put(session, resource, actor)

    def delete(self, session: Session, name: str, project: str | None = None) -> None:
        name = normalise_email(name)
        if name == SYSTEM_USER_EMAIL:
            raise Conflict(
                f"the system user {SYSTEM_USER_EMAIL} cannot be deleted: it owns what has no "
                "owner and holds the bootstrap admin token"
            )
        row = self.find(session, name)
        system = self.find(session, SYSTEM_USER_EMAIL)
        # What the user owned passes to the system user rather than disappearing.
        for owned in (ProjectRow, PromptRow):
            session.execute(
                update(owned).where(owned.owner_id == row.id).values(owner_id=system.id)
            )
        remove(session, row, f"user {name!r}")


TEMPLATES = SpecRepository(TEMPLATE, TemplateRow)
SERVERS = ServerRepository()
USERS = UserRepository()
