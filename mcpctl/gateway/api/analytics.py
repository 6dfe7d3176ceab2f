"""`/api/v1/analytics/history`: per-server restarts, crash reasons, uptime and MTBF."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcpctl.backup.history import history
from mcpctl.gateway import policy
from mcpctl.gateway.api.operation import Operation
from mcpctl.gateway.api.params import Name, Params, Window
from mcpctl.gateway.auth import Principal
from mcpctl.gateway.context import context_of
from mcpctl.models.base import Model
from mcpctl.store.repositories.events import events_for_window


class HistoryParams(Params):
    server: Name | None = None
    window: Window = Field("24h", validate_default=True)


class History(Model):
    start: datetime
    end: datetime
    servers: list[dict[str, Any]]


async def server_history(request: Request, principal: Principal) -> Response:
    policy.require_admin(principal, "read history")
    params = HistoryParams.of(request)
    server = params.server
    end = datetime.now(UTC)
    start = end - params.window
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
        params=HistoryParams,
        responses={200: History},
    )
]
