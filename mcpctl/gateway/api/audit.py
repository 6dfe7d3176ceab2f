"""`/api/v1/audit`: the audit trail, filtered, as JSON or JSON lines; `/api/v1/audit/summary`:
calls, errors, denials and p95 duration per user x tool (DuckDB). Members see only their own
requests; admins everyone's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from mcpctl.backup.audit_summary import summarize
from mcpctl.gateway.api.operation import Operation
from mcpctl.gateway.api.params import Digits, Moment, OneOf, Params, Text, moment
from mcpctl.gateway.audit import OUTCOMES
from mcpctl.gateway.auth import Principal
from mcpctl.gateway.context import context_of
from mcpctl.models.audit import AuditEvent, AuditList, AuditSummary, AuditSummaryRow
from mcpctl.models.base import field_error
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


class SummaryParams(Params):
    since: Moment = Field("24h", validate_default=True)
    until: Moment | None = None  # now
    user: Text | None = None  # an email, or `-` for requests without a principal
    project: Text | None = None
    server: Text | None = None
    outcome: Annotated[str, OneOf(OUTCOMES)] | None = None


class AuditParams(SummaryParams):
    limit: Annotated[int, Digits(1, MAX_EXPORT)] | None = None
    format: Literal["json", "jsonl"] = "json"


def audit_filter(params: SummaryParams, principal: Principal) -> AuditFilter:
    now = datetime.now(UTC)
    user = params.user
    if user is not None:
        user = normalise_email(user) if "@" in user else user
    if not principal.is_admin:  # members see only their own
        if user is not None and user != principal.email:
            raise field_error(
                "AuditParams", "user", "members see only their own audit records", user
            )
        user = principal.email
    return AuditFilter(
        since=moment(params.since, now),
        until=moment(params.until, now) if params.until is not None else now,
        principal=user,
        project=params.project,
        server=params.server,
        outcome=params.outcome,
    )


def _limit(params: AuditParams) -> int:
    if params.format == "jsonl":
        return params.limit or MAX_EXPORT
    if params.limit is not None and params.limit > MAX_LIMIT:
        raise field_error(
            "AuditParams",
            "limit",
            f"at most {MAX_LIMIT} (up to {MAX_EXPORT} with format=jsonl)",
            params.limit,
        )
    return params.limit or DEFAULT_LIMIT


def _event(row: dict[str, Any]) -> dict[str, Any]:
    return AuditEvent.model_validate(row).model_dump(mode="json", by_alias=True)


async def list_audit(request: Request, principal: Principal) -> Response:
    params = AuditParams.of(request)
    where = audit_filter(params, principal)
    limit = _limit(params)
    context = context_of(request)
    if params.format == "jsonl":
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
    where = audit_filter(SummaryParams.of(request), principal)
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
        params=AuditParams,
        responses={200: AuditList},
    ),
    Operation(
        "GET",
        "/api/v1/audit/summary",
        audit_summary,
        "summarize audit records",
        "audit",
        params=SummaryParams,
        responses={200: AuditSummary},
    ),
]
