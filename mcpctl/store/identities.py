"""Users who arrive with a token of the OpenID provider: created as members the first time."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mcpctl.models.user import Role, UserSpec, normalise_email
from mcpctl.store.repositories.base import spec_json
from mcpctl.store.tables import UserRow


def provision(session: Session, email: str, display_name: str = "") -> Role:
    """The stored role of the user `email`; a user seen for the first time is created as a
    member (two first requests at once: one creates, the other reads it)."""
    email = normalise_email(email)
    row = session.scalar(select(UserRow).where(UserRow.email == email))
    if row is None:
        spec = spec_json(UserSpec(display_name=display_name[:256], role=Role.MEMBER))
        try:
            with session.begin_nested():
                session.add(UserRow(email=email, spec=spec))
            return Role.MEMBER
        except IntegrityError:
            row = session.scalar(select(UserRow).where(UserRow.email == email))
            if row is None:
                raise
    return Role(row.spec.get("role", "member"))
