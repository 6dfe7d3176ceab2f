"""Assembles the Starlette application from the operations of every API module."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcpctl.gateway import errors, health
from mcpctl.gateway.api import backup, instances, openapi, resources, templates, users
from mcpctl.gateway.api.operation import Operation
from mcpctl.gateway.auth import Principal, TokenBackend, on_auth_error
from mcpctl.gateway.context import GatewayContext
from mcpctl.models.kinds import KINDS


def api_operations() -> list[Operation]:
    operations = [*health.OPERATIONS, *users.OPERATIONS, *instances.OPERATIONS]
    for kind in KINDS:
        operations += resources.operations(kind)
    operations += templates.OPERATIONS + backup.OPERATIONS
    return operations


def build_app(context: GatewayContext) -> Starlette:
    operations = api_operations()
    spec = openapi.document(operations)

    async def openapi_json(request: Request, principal: Principal) -> Response:
        return JSONResponse(spec)

    docs = Operation(
        "GET", "/api/v1/openapi.json", openapi_json, "openapi document", "meta", public=True
    )
    app = Starlette(
        routes=[op.route() for op in [*operations, docs]],
        middleware=[
            Middleware(
                AuthenticationMiddleware,
                backend=TokenBackend(context.database),
                on_error=on_auth_error,
            )
        ],
        exception_handlers=errors.HANDLERS,
    )
    app.state.context = context
    return app
