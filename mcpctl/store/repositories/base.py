"""What every repository shares: document conversion and the create/configure/unchanged outcome."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mcpctl.models.base import Metadata, Model
from mcpctl.models.kinds import Kind, Resource
from mcpctl.store.errors import ConcurrentWrite


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
def inserting(kind: Kind, name: str) -> Iterator[None]:
    """Around the flush that inserts a new `name`. Two requests that both found no row race to
    insert it; the unique constraint stops the second at this flush (PostgreSQL after the first
    commits, SQLite once it has the write lock), which is a ConcurrentWrite, never a 500."""
    try:
        yield
    except IntegrityError:
        raise ConcurrentWrite(
            f"{kind.name.lower()} {name!r} already exists (created by a concurrent request)"
        ) from None


class Repository:
    """A kind's rows as documents. Subclasses implement the row mapping."""

    kind: Kind

    def list(self, session: Session, project: str | None = None) -> list[Resource[Any]]:
        raise NotImplementedError

    def get(self, session: Session, name: str, project: str | None = None) -> Resource[Any]:
        raise NotImplementedError

    def put(self, session: Session, resource: Resource[Any], actor: str) -> Outcome:
        """Create or replace; `actor` is the email of who asks (the default owner)."""
        raise NotImplementedError

    def delete(self, session: Session, name: str, project: str | None = None) -> None:
        raise NotImplementedError
