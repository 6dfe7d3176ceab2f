"""Instance lifecycle events: appended by the runtime, read for history analytics."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mcpctl.models.instance import EventKind, InstanceEvent
from mcpctl.store.tables import InstanceEventRow


def record_event(session: Session, event: InstanceEvent) -> None:
    session.add(
        InstanceEventRow(
            server=event.server,
            replica=event.replica,
            kind=event.kind.value,
            reason=(event.reason or None) and event.reason[:2000],
            at=event.at,
        )
    )


def events_between(
    session: Session, start: datetime, end: datetime, server: str | None = None
) -> list[InstanceEvent]:
    query = (
        select(InstanceEventRow)
        .where(InstanceEventRow.at >= start, InstanceEventRow.at <= end)
        .order_by(InstanceEventRow.at, InstanceEventRow.id)
    )
    if server is not None:
        query = query.where(InstanceEventRow.server == server)
    return [
        InstanceEvent(
            server=row.server,
            replica=row.replica,
            kind=EventKind(row.kind),
            reason=row.reason,
            at=row.at,
        )
        for row in session.scalars(query)
    ]
