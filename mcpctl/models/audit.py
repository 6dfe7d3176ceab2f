"""What the audit trail shows: one audited request, and a summary per user and tool."""

from __future__ import annotations

from datetime import datetime

from mcpctl.models.base import Model, Record


class AuditEvent(Record):
    id: int
    at: datetime
    principal: str
    endpoint: str
    project: str | None = None
    server: str | None = None
    method: str
    name: str
    outcome: str  # ok, tool_error, protocol_error, denied, timeout
    status: int | None = None  # the HTTP status of a denied request
    reason: str | None = None  # why it was denied, or the protocol error's message
    duration_ms: float
    request_id: str | None = None
    trace_id: str | None = None
    args_hash: str | None = None  # sha256 of the arguments' canonical JSON, never the values
    source: str | None = None  # the client's address
    count: int = 1  # requests this record stands for (unauthenticated denials are aggregated)


class AuditList(Model):
    items: list[AuditEvent]
    truncated: bool  # more rows matched than `limit`


class AuditSummaryRow(Model):
    principal: str
    server: str | None = None
    method: str
    name: str
    calls: int
    errors: int  # tool_error, protocol_error and timeout
    denied: int
    p95_ms: float | None = None  # of the calls that were not denied


class AuditSummary(Model):
    since: datetime
    until: datetime
    rows: list[AuditSummaryRow]
