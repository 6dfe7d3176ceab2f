"""Reading the audit trail (gateway/audit.py writes it, in batches)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from mcpctl.store.tables import AuditEventRow

COLUMNS = [column.name for column in AuditEventRow.__table__.columns]


@dataclass(frozen=True)
class AuditFilter:
    since: datetime
    until: datetime
    principal: str | None = None
    project: str | None = None
    server: str | None = None
    outcome: str | None = None

    def query(self, *columns: Any) -> Select[Any]:
        row = AuditEventRow
        query = select(*columns) if columns else select(row)
        query = query.where(row.at >= self.since, row.at <= self.until)
        for column, value in (
            (row.principal, self.principal),
            (row.project, self.project),
            (row.server, self.server),
            (row.outcome, self.outcome),
        ):
            if value is not None:
                query = query.where(column == value)
        return query


def audit_events(session: Session, where: AuditFilter, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` matching rows, newest first."""
    query = where.query().order_by(AuditEventRow.at.desc(), AuditEventRow.id.desc()).limit(limit)
    return [{name: getattr(row, name) for name in COLUMNS} for row in session.scalars(query)]


def audit_columns(session: Session, where: AuditFilter, limit: int) -> dict[str, list[Any]]:
    """What a summary needs of at most `limit` matching rows, column by column."""
    row = AuditEventRow
    names = ("principal", "server", "method", "name", "outcome", "duration_ms", "count")
    query = where.query(*(getattr(row, n) for n in names)).limit(limit)
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for values in session.execute(query):
        for name, value in zip(names, values, strict=True):
            columns[name].append(value)
    return columns


def iter_audit_events(session: Session, where: AuditFilter, limit: int) -> Iterator[dict[str, Any]]:
    """Like audit_events, read in chunks (for a JSON-lines export)."""
    query = where.query().order_by(AuditEventRow.at, AuditEventRow.id).limit(limit)
    for row in session.scalars(query.execution_options(yield_per=1000)):
        yield {name: getattr(row, name) for name in COLUMNS}
