"""Secrets: values sealed at rest and never read back through the API."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mcpctl.models.kinds import SECRET, Resource
from mcpctl.store.errors import InvalidReference, NotFound
from mcpctl.store.repositories.base import Outcome, Repository, document, remove
from mcpctl.store.secretbox import SecretBox
from mcpctl.store.tables import SecretRow


class SecretRepository(Repository):
    kind = SECRET

    def __init__(self, box: SecretBox) -> None:
        self.box = box

    def find(self, session: Session, name: str) -> SecretRow:
        row = session.scalar(select(SecretRow).where(SecretRow.name == name))
        if row is None:
            raise NotFound(f"secret {name!r} not found")
        return row

    def to_resource(self, row: SecretRow) -> Resource[Any]:
        keys = sorted(self.box.open(row.ciphertext))
        spec = {"data": dict.fromkeys(keys)}
        return document(SECRET, row.name, spec, row.created_at, row.updated_at)

    def list(self, session: Session, project: str | None = None) -> list[Resource[Any]]:
        rows = session.scalars(select(SecretRow).order_by(SecretRow.name))
        return [self.to_resource(row) for row in rows]

    def get(self, session: Session, name: str, project: str | None = None) -> Resource[Any]:
        return self.to_resource(self.find(session, name))

    def values(self, session: Session, name: str) -> dict[str, str]:
        """The clear values, for the orchestrator that starts a server; never for the API."""
        return self.box.open(self.find(session, name).ciphertext)

    def apply(self, session: Session, resource: Resource[Any], actor: str) -> Outcome:
        # A null value keeps the stored one, so `get -o yaml | apply -f -` is a no-op.
        row = session.scalar(select(SecretRow).where(SecretRow.name == resource.metadata.name))
        current = self.box.open(row.ciphertext) if row is not None else {}
        values: dict[str, str] = {}
        for key, value in resource.spec.data.items():
            if value is None:
                if key not in current:
                    field = f"spec.data.{key}"
                    raise InvalidReference(f"{field}: a new key needs a value", field)
                value = current[key]
            values[key] = value
        if row is None:
            session.add(SecretRow(name=resource.metadata.name, ciphertext=self.box.seal(values)))
            session.flush()
            return Outcome.CREATED
        if values == current:
            return Outcome.UNCHANGED
        row.ciphertext = self.box.seal(values)
        session.flush()
        return Outcome.CONFIGURED

    def delete(self, session: Session, name: str, project: str | None = None) -> None:
        remove(session, self.find(session, name), f"secret {name!r}")
