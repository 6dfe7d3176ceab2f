"""Instances are written by the runtime and read (or deleted) through the API."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mcpctl.models.instance import Instance, InstanceStatus
from mcpctl.store.errors import NotFound
from mcpctl.store.tables import InstanceRow, ServerRow


def _as_model(row: InstanceRow) -> Instance:
    return Instance(
        server=row.server.name,
        replica=row.replica,
        status=InstanceStatus(row.status),
        pod=row.pod,
        pid=row.pid,
        address=row.address,
        restart_count=row.restart_count,
        started_at=row.started_at,
        last_error=row.last_error,
        updated_at=row.updated_at,
    )


def list_instances(session: Session, server: str | None = None) -> list[Instance]:
    query = select(InstanceRow).join(ServerRow).order_by(ServerRow.name, InstanceRow.replica)
    if server is not None:
        query = query.where(ServerRow.name == server)
    return [_as_model(row) for row in session.scalars(query)]


def _find(session: Session, name: str) -> InstanceRow:
    server, _, replica = name.rpartition("-")
    row = None
    if server and replica.isascii() and replica.isdigit():  # not "²": int() refuses it
        row = session.scalar(
            select(InstanceRow)
            .join(ServerRow)
            .where(ServerRow.name == server, InstanceRow.replica == int(replica))
        )
    if row is None:
        raise NotFound(f"instance {name!r} not found")
    return row


def get_instance(session: Session, name: str) -> Instance:
    return _as_model(_find(session, name))


def delete_instance(session: Session, name: str) -> Instance:
    row = _find(session, name)
    instance = _as_model(row)
    session.delete(row)
    session.flush()
    return instance


def record(session: Session, instance: Instance) -> None:
    """Upsert what the runtime observed about one instance."""
    server = session.scalar(select(ServerRow).where(ServerRow.name == instance.server))
    if server is None:
        return  # the server was deleted while its replica reported
    row = session.scalar(
        select(InstanceRow).where(
            InstanceRow.server_id == server.id, InstanceRow.replica == instance.replica
        )
    )
    if row is None:
        row = InstanceRow(server_id=server.id, replica=instance.replica)
        session.add(row)
    row.status = instance.status.value
    row.pod = instance.pod
    row.pid = instance.pid
    row.address = instance.address
    row.restart_count = instance.restart_count
    row.started_at = instance.started_at
    row.last_error = instance.last_error
    session.flush()


def forget(session: Session, server: str, keep_below: int) -> None:
    """Drop the rows of replicas at or above `keep_below` (after a scale-down)."""
    server_row = session.scalar(select(ServerRow).where(ServerRow.name == server))
    if server_row is None:
        return
    for row in session.scalars(
        select(InstanceRow).where(
            InstanceRow.server_id == server_row.id, InstanceRow.replica >= keep_below
        )
    ):
        session.delete(row)
    session.flush()
