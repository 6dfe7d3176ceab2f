"""`/api/v1/analytics/history`: per-server restarts, crash reasons, uptime and MTBF."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcpctl.backup.history import history, parse_window
from mcpctl.gateway import policy
from mcpctl.gateway.api.operation import Operation
from mcpctl.gateway.auth import Principal
from mcpctl.gateway.context import context_of
from mcpctl.gateway.errors import error_response
from mcpctl.models.base import Model
from mcpctl.store.repositories.events import events_for_window


class History(Model):
    start: datetime
    end: datetime
    servers: list[dict[str, Any]]


async def server_history(request: Request, principal: Principal) -> Response:
    policy.require_admin(principal, "read history")
    server = request.query_params.get("server") or None
    try:
        window = parse_window(request.query_params.get("window", "24h"))
    except ValueError as error:
        return error_response(422, str(error), "window")
    end = datetime.now(UTC)
    start = end - window
    events = await context_of(request).transaction(
        lambda s: events_for_window(s, start, end, server)
    )
    rows = await run_in_threadpool(history, events, start, end)
    body = History(start=start, end=end, servers=rows)
    return JSONResponse(body.model_dump(mode="json", by_alias=True))


OPERATIONS = [
    Operation(
        "GET",
        "/api/v1/analytics/history",
        server_history,
        "instance history",
        "analytics",
        query=("server", "window"),
        responses={200: History},
    )
]
