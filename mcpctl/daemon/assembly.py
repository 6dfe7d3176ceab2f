"""Wiring mcpd together: the runtime, the gateway context and the app (mcpd and tests alike)."""

from __future__ import annotations

from starlette.applications import Starlette

from mcpctl.actors.host import HostConfig
from mcpctl.actors.runtime import Runtime
from mcpctl.gateway.app import build_app
from mcpctl.gateway.audit import AuditConfig
from mcpctl.gateway.context import GatewayContext
from mcpctl.gateway.limits import Limits
from mcpctl.gateway.rate_limit import RateLimitConfig
from mcpctl.gateway.resource_metadata import ResourceServer
from mcpctl.gateway.unauthenticated import SourceLimits
from mcpctl.observability.metrics import Metrics
from mcpctl.store.database import Database
from mcpctl.store.repositories import repositories
from mcpctl.store.secretbox import SecretBox


def assemble(
    database: Database,
    host_config: HostConfig,
    resync_seconds: float,
    hosts: int | None,
    namespace: str,
    limits: Limits | None = None,
    shared: bool = False,
    oauth: ResourceServer | None = None,
    audit: AuditConfig | None = None,
    rate_limits: RateLimitConfig | None = None,
    source_limits: SourceLimits | None = None,
) -> tuple[Starlette, Runtime]:
    """The app and the runtime it starts and stops with (its lifespan)."""
    metrics = Metrics()
    runtime = Runtime(
        host_config,
        resync_seconds=resync_seconds,
        hosts=hosts,
        namespace=namespace,
        metrics=metrics,
        shared=shared,
    )
    context = GatewayContext(
        database,
        repositories(SecretBox(host_config.secret_key)),
        on_change=runtime.on_change,
        on_instance_deleted=runtime.on_instance_deleted,
    )
    return build_app(
        context,
        runtime,
        metrics,
        lifespan=runtime.lifespan,
        limits=limits,
        session_key=host_config.secret_key,
        oauth=oauth,
        audit=audit,
        rate_limits=rate_limits,
        source_limits=source_limits,
    ), runtime
