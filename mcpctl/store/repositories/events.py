"""Instance lifecycle events: appended by the runtime, read for history analytics."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, select
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
    """The events from `start` to `end` (both included), oldest first."""
    return _events(session, and_(InstanceEventRow.at >= start, InstanceEventRow.at <= end), server)


def events_for_window(
    session: Session, start: datetime, end: datetime, server: str | None = None
) -> list[InstanceEvent]:
    """What history over [start, end] needs, chosen by the database: every event inside the
    window, plus each replica's last event before it (the state the window opens in). Older
    events end before the window opens, so they are never read."""
    row = InstanceEventRow
    rank = (
        func.row_number()
        .over(partition_by=(row.server, row.replica), order_by=(row.at.desc(), row.id.desc()))
        .label("rank")
    )
    before = select(row.id, rank).where(row.at < start)
    if server is not None:
        before = before.where(row.server == server)
    last_before = before.subquery()
    opening = select(last_before.c.id).where(last_before.c.rank == 1)
    inside = and_(row.at >= start, row.at <= end)
    return _events(session, or_(inside, row.id.in_(opening)), server)


def _events(
    session: Session, condition: ColumnElement[bool], server: str | None
) -> list[InstanceEvent]:
    query = select(InstanceEventRow).where(condition)
    if server is not None:
        query = query.where(InstanceEventRow.server == server)
    query = query.order_by(InstanceEventRow.at, InstanceEventRow.id)
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
