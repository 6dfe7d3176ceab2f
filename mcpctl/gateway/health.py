"""Liveness and readiness probes."""

from __future__ import annotations

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcpctl.gateway.api.operation import Operation
from mcpctl.gateway.auth import Principal
from mcpctl.gateway.context import context_of
from mcpctl.models.base import Model


class Health(Model):
    status: str


async def healthz(request: Request, principal: Principal) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request, principal: Principal) -> Response:
    """Ready when the database answers, until the stop began (SIGTERM: the server's shutdown
    gate marks every request after it, so load balancers stop sending new work here)."""
    if getattr(request.state, "shutting_down", False):
        return JSONResponse({"status": "shutting down"}, 503)
    try:
        await context_of(request).transaction(lambda s: s.execute(text("SELECT 1")))
    except Exception as error:  # any database failure means not ready
        return JSONResponse({"status": f"database unavailable: {type(error).__name__}"}, 503)
    return JSONResponse({"status": "ok"})


OPERATIONS = [
    Operation(
        "GET", "/healthz", healthz, "liveness", "health", responses={200: Health}, public=True
    ),
    Operation(
        "GET",
        "/readyz",
        readyz,
        "readiness",
        "health",
        responses={200: Health, 503: Health},
        public=True,
    ),
]
