"""`/api/v1/audit`: the audit trail, filtered, as JSON or JSON lines; `/api/v1/audit/summary`:
calls, errors, denials and p95 duration per user x tool (DuckDB). Members see only their own
requests; admins everyone's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from mcpctl.backup.audit_summary import summarize
from mcpctl.backup.history import parse_window
from mcpctl.gateway.api.operation import Operation
from mcpctl.gateway.audit import OUTCOMES
from mcpctl.gateway.auth import Principal
from mcpctl.gateway.context import context_of
from mcpctl.gateway.errors import error_response
from mcpctl.models.audit import AuditEvent, AuditList, AuditSummary, AuditSummaryRow
from mcpctl.models.user import normalise_email
from mcpctl.store.repositories.audit import (
    AuditFilter,
    audit_columns,
    audit_events,
    iter_audit_events,
)

DEFAULT_LIMIT = 500
MAX_LIMIT = 10_000
MAX_EXPORT = 1_000_000  # rows of one JSON-lines export or one summary
FILTERS = ("since", "until", "user", "project", "server", "outcome")


class BadQuery(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def moment(text: str, now: datetime, field: str) -> datetime:
    """`1h`, `30m`, `7d` (that long ago) or an ISO 8601 time (UTC unless it says otherwise)."""
    try:
        return now - parse_window(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(
            field, f"{field} {text[:40]!r}: use a duration (30m, 24h, 7d) or an ISO 8601 time"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def audit_filter(request: Request, principal: Principal, default_since: str) -> AuditFilter:
    query = request.query_params
    now = datetime.now(UTC)
    since = moment(query.get("since") or default_since, now, "since")
    until = moment(query["until"], now, "until") if query.get("until") else now
    user = query.get("user") or None
    if user is not None:
        user = normalise_email(user) if "@" in user else user
    if not principal.is_admin:  # members see only their own
        if user is not None and user != principal.email:
            raise BadQuery("user", "members see only their own audit records")
        user = principal.email
    outcome = query.get("outcome") or None
    if outcome is not None and outcome not in OUTCOMES:
        raise BadQuery("outcome", f"outcome {outcome[:40]!r}: one of {', '.join(OUTCOMES)}")
    return AuditFilter(
        since=since,
        until=until,
        principal=user,
        project=query.get("project") or None,
        server=query.get("server") or None,
        outcome=outcome,
    )


def _limit(request: Request, default: int, most: int) -> int:
    text = request.query_params.get("limit")
    if not text:
        return default
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise BadQuery("limit", f"limit: a number from 1 to {most}")
    return int(text)


def _event(row: dict[str, Any]) -> dict[str, Any]:
    return AuditEvent.model_validate(row).model_dump(mode="json", by_alias=True)


async def list_audit(request: Request, principal: Principal) -> Response:
    try:
        where = audit_filter(request, principal, "24h")
        jsonl = request.query_params.get("format") == "jsonl"
        limit = _limit(
            request, MAX_EXPORT if jsonl else DEFAULT_LIMIT, MAX_EXPORT if jsonl else MAX_LIMIT
        )
    except BadQuery as error:
        return error_response(422, str(error), error.field)
    context = context_of(request)
    if jsonl:
        return StreamingResponse(
            _lines(context.database, where, limit), media_type="application/jsonl"
        )
    rows = await context.transaction(lambda s: audit_events(s, where, limit + 1))
    body = AuditList(
        items=[AuditEvent.model_validate(row) for row in rows[:limit]], truncated=len(rows) > limit
    )
    return JSONResponse(body.model_dump(mode="json", by_alias=True))


async def _lines(database: Any, where: AuditFilter, limit: int) -> AsyncIterator[bytes]:
    """JSON lines, oldest first, read from the store in chunks on a worker thread."""

    def rows() -> Any:
        with database.transaction() as session:
            chunk: list[bytes] = []
            for row in iter_audit_events(session, where, limit):
                chunk.append(orjson.dumps(_event(row)) + b"\n")
                if len(chunk) >= 1000:
                    yield b"".join(chunk)
                    chunk = []
            if chunk:
                yield b"".join(chunk)

    async for chunk in iterate_in_threadpool(rows()):
        yield chunk


async def audit_summary(request: Request, principal: Principal) -> Response:
    try:
        where = audit_filter(request, principal, "24h")
    except BadQuery as error:
        return error_response(422, str(error), error.field)
    columns = await context_of(request).transaction(lambda s: audit_columns(s, where, MAX_EXPORT))
    rows = await run_in_threadpool(summarize, columns)
    body = AuditSummary(
        since=where.since, until=where.until, rows=[AuditSummaryRow.model_validate(r) for r in rows]
    )
    return JSONResponse(body.model_dump(mode="json", by_alias=True))


OPERATIONS = [
    Operation(
        "GET",
        "/api/v1/audit",
        list_audit,
        "list audit records",
        "audit",
        query=(*FILTERS, "limit", "format"),
        responses={200: AuditList},
    ),
    Operation(
        "GET",
        "/api/v1/audit/summary",
        audit_summary,
        "summarize audit records",
        "audit",
        query=FILTERS,
        responses={200: AuditSummary},
    ),
]
