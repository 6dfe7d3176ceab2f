"""What every repository shares: document conversion and the create/configure/unchanged outcome."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from mcpctl.models.base import Metadata, Model
from mcpctl.models.kinds import Kind, Resource
from mcpctl.store.errors import ConcurrentWrite, NotFound


class Outcome(StrEnum):
    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"


def spec_json(spec: Model) -> dict[str, Any]:
    """The normalised JSON of a spec: what is stored and compared."""
    return spec.model_dump(mode="json", by_alias=True)


def document(
    kind: Kind,
    name: str,
    spec: dict[str, Any],
    created_at: datetime | None,
    updated_at: datetime | None,
    project: str | None = None,
    status: dict[str, Any] | None = None,
) -> Resource[Any]:
    metadata = Metadata(name=name, project=project, created_at=created_at, updated_at=updated_at)
    return Resource[kind.spec].model_validate(  # type: ignore[name-defined]
        {"kind": kind.name, "metadata": metadata, "spec": spec, "status": status}
    )


@contextmanager
def concurrent_writes(kind: Kind, name: str) -> Iterator[None]:
    """Around a put. Two requests that both found no row race to insert `name`: the unique
    constraint stops the second at its flush (PostgreSQL once the first commits, SQLite once it
    has the write lock). A row updated, or referenced, after a concurrent request deleted it
    fails the same way. Each is a ConcurrentWrite (409, or the same put again), never a 500."""
    label = f"{kind.name.lower()} {name!r}"
    try:
        yield
    except IntegrityError as error:
        if "unique" in str(error.orig).lower():
            message = f"{label} already exists (a concurrent request created it)"
        else:
            message = f"{label} names something a concurrent request deleted"
        raise ConcurrentWrite(message) from None
    except StaleDataError:
        raise ConcurrentWrite(f"{label} was deleted by a concurrent request") from None


def remove(session: Session, row: Any, label: str) -> None:
    """Delete `row`; the database cascades to what hangs off it. When a concurrent request
    deleted it first this one deleted nothing: NotFound, not a second success."""
    table = type(row)
    deleted = session.execute(
        delete(table).where(table.id == row.id), execution_options={"synchronize_session": False}
    )
    if deleted.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(f"{label} not found")
    session.expunge(row)


class Repository:
    """A kind's rows as documents. Subclasses implement the row mapping."""

    kind: Kind

    def list(self, session: Session, project: str | None = None) -> list[Resource[Any]]:
        raise NotImplementedError

    def get(self, session: Session, name: str, project: str | None = None) -> Resource[Any]:
        raise NotImplementedError

    def put(self, session: Session, resource: Resource[Any], actor: str) -> Outcome:
        """Create or replace; `actor` is the email of who asks (the default owner)."""
        with concurrent_writes(self.kind, resource.metadata.name):
            return self.apply(session, resource, actor)

    def apply(self, session: Session, resource: Resource[Any], actor: str) -> Outcome:
        """What `put` does, without the guard against concurrent writers."""
        raise NotImplementedError

    def delete(self, session: Session, name: str, project: str | None = None) -> None:
        raise NotImplementedError
