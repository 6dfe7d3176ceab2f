"""Taking and restoring backups through the repositories, each in one transaction."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mcpctl import __version__
from mcpctl.backup.format import BACKED_UP, Backup
from mcpctl.models.kinds import PROJECT, PROMPT, USER, Kind, Resource
from mcpctl.models.user import SYSTEM_USER_EMAIL, normalise_email
from mcpctl.store.repositories import Outcome, Repository
from mcpctl.store.tables import UserRow, utcnow


def take(session: Session, repositories: dict[Kind, Repository]) -> Backup:
    items: list[dict[str, Any]] = []
    for kind in BACKED_UP:
        for resource in repositories[kind].list(session):
            if kind is USER and resource.metadata.name == SYSTEM_USER_EMAIL:
                continue
            items.append(
                resource.model_dump(
                    mode="json", by_alias=True, exclude_none=True, exclude={"status"}
                )
            )
    return Backup(created_at=utcnow(), mcpd_version=__version__, items=items)


def restore(
    session: Session, repositories: dict[Kind, Repository], resources: list[Resource[Any]]
) -> dict[str, Counter[str]]:
    """Apply every document in dependency order. The caller's transaction makes it atomic."""
    order = {kind.name: index for index, kind in enumerate(BACKED_UP)}
    known_users = {email for email in session.scalars(select(UserRow.email))}
    known_users |= {normalise_email(r.metadata.name) for r in resources if r.kind == USER.name}
    outcomes: dict[str, Counter[str]] = {}
    for resource in sorted(resources, key=lambda r: order[r.kind]):
        kind = next(k for k in BACKED_UP if k.name == resource.kind)
        owner = resource.spec.owner if kind in (PROJECT, PROMPT) else None
        if owner is not None and normalise_email(owner) not in known_users:
            resource.spec.owner = None  # an owner the target lacks: the system user
        outcome: Outcome = repositories[kind].put(session, resource, SYSTEM_USER_EMAIL)
        outcomes.setdefault(kind.plural, Counter())[outcome.value] += 1
    return outcomes
