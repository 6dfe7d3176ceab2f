"""Assembles the Starlette application from the operations of every API module."""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcpctl.gateway import errors, health, mcp_endpoint, resource_metadata
from mcpctl.gateway.api import analytics, backup, instances, openapi, resources, templates, users
from mcpctl.gateway.api import audit as audit_api
from mcpctl.gateway.api.operation import Operation
from mcpctl.gateway.audit import AuditConfig, AuditLog
from mcpctl.gateway.auth import Principal, TokenBackend, on_auth_error
from mcpctl.gateway.body_limit import BodyLimitMiddleware, BodyTooLarge, on_body_too_large
from mcpctl.gateway.context import GatewayContext
from mcpctl.gateway.limits import Limits
from mcpctl.gateway.metrics_endpoint import metrics
from mcpctl.gateway.rate_limit import RateLimitConfig, RateLimiter
from mcpctl.gateway.request_state import RequestStates
from mcpctl.gateway.resource_metadata import ResourceServer
from mcpctl.gateway.sessions import SessionRegistry
from mcpctl.gateway.tasks import TaskIds
from mcpctl.gateway.unauthenticated import SourceBudget, SourceLimits
from mcpctl.models.kinds import KINDS
from mcpctl.observability.metrics import Metrics


def api_operations() -> list[Operation]:
    operations = [*health.OPERATIONS, *users.OPERATIONS, *instances.OPERATIONS]
    for kind in KINDS:
        operations += resources.operations(kind)
    operations += templates.OPERATIONS + backup.OPERATIONS + analytics.OPERATIONS
    operations += audit_api.OPERATIONS
    return operations


def build_app(
    context: GatewayContext,
    runtime: Any = None,
    registry: Metrics | None = None,
    lifespan: Any = None,
    limits: Limits | None = None,
    session_key: bytes | None = None,
    oauth: ResourceServer | None = None,
    audit: AuditConfig | None = None,
    rate_limits: RateLimitConfig | None = None,
    source_limits: SourceLimits | None = None,
) -> Starlette:
    """The whole app; `runtime` (an actors.runtime.Runtime) serves the MCP endpoints; with
    `oauth`, the OpenID provider's access tokens are accepted besides API tokens."""
    operations = api_operations()
    spec = openapi.document(operations)
    limits = limits or Limits()
    registry = registry or Metrics()
    audit_log = AuditLog(context.database, registry, audit or AuditConfig())

    async def openapi_json(request: Request, principal: Principal) -> Response:
        return JSONResponse(spec)

    docs = Operation(
        "GET", "/api/v1/openapi.json", openapi_json, "openapi document", "meta", public=True
    )
    app = Starlette(
        routes=[
            *mcp_endpoint.routes(),  # first: the router tries routes in order, MCP is hot
            *(op.route() for op in [*operations, docs]),
            Route("/metrics", metrics, methods=["GET"]),
            *resource_metadata.routes(),
        ],
        middleware=[
            Middleware(
                BodyLimitMiddleware,
                limit=limits.max_body_bytes,
                larger={"/api/v1/restore": limits.max_restore_bytes},
            ),
            Middleware(
                AuthenticationMiddleware,
                backend=TokenBackend(context.database, context.token_cache, oauth=oauth),
                on_error=on_auth_error,
            ),
        ],
        exception_handlers={
            **errors.HANDLERS,
            BodyTooLarge: on_body_too_large,
            mcp_endpoint.ClientGone: mcp_endpoint.on_client_gone,
        },
        lifespan=audit_log.around(lifespan),  # the audit's last records written at the end
    )
    app.state.context = context
    app.state.runtime = runtime
    app.state.oauth = oauth
    cluster_key = session_key or Fernet.generate_key()  # one per process without a cluster
    app.state.sessions = SessionRegistry(
        limits.session_idle_seconds, limits.max_sessions_per_principal, cluster_key
    )
    app.state.request_states = RequestStates(cluster_key, limits.request_timeout)
    app.state.task_ids = TaskIds(cluster_key)
    app.state.metrics = registry
    app.state.audit = audit_log
    app.state.rate_limiter = RateLimiter(
        context.database, registry, rate_limits or RateLimitConfig()
    )
    app.state.source_budget = SourceBudget(source_limits or SourceLimits())
    app.state.limits = limits
    return app
