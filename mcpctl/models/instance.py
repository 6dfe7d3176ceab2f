"""An Instance is one running replica of a Server: a pod or a local process."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from mcpctl.models.base import Record


class InstanceStatus(StrEnum):
    PENDING = "PENDING"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    ERROR = "ERROR"


class Instance(Record):
    server: str
    replica: int = Field(ge=0)
    status: InstanceStatus = InstanceStatus.PENDING
    pod: str | None = None
    pid: int | None = None
    address: str | None = None
    restart_count: int = 0
    started_at: datetime | None = None
    last_error: str | None = None
    updated_at: datetime | None = None

    @property
    def name(self) -> str:
        return instance_name(self.server, self.replica)


def instance_name(server: str, replica: int) -> str:
    return f"{server}-{replica}"


class EventKind(StrEnum):
    STARTED = "started"  # a process or pod was started
    ADOPTED = "adopted"  # one left by an earlier mcpd was taken over
    READY = "ready"  # it answered the MCP handshake
    CRASHED = "crashed"  # it ended on its own
    REPLACED = "replaced"  # mcpd replaced it (spec change, instance deleted)
    FAILED = "failed"  # it could not start
    STOPPED = "stopped"  # mcpd stopped it


class InstanceEvent(Record):
    server: str
    replica: int
    kind: EventKind
    reason: str | None = None
    at: datetime
