"""`/metrics`: the gateway's own series plus instance gauges read from the store, and what the
hosts count (messages dropped, data-plane connections refused).

With `metrics_require_token` it answers only requests with a valid API token (any user's);
`metrics_app` serves it alone, without a token, for a port of its own (MCPD_METRICS_PORT)."""

from __future__ import annotations

import dataclasses
from collections import Counter

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mcpctl.gateway.context import context_of
from mcpctl.gateway.errors import error_response
from mcpctl.gateway.limits import Limits
from mcpctl.models.instance import InstanceStatus
from mcpctl.observability.metrics import Metrics
from mcpctl.store.repositories.instances import list_instances


async def metrics(request: Request) -> Response:
    limits: Limits = request.app.state.limits
    if limits.metrics_require_token and not request.user.is_authenticated:
        response = error_response(401, "/metrics needs a token: 'Authorization: Bearer <token>'")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    registry: Metrics = request.app.state.metrics
    instances = await context_of(request).transaction(lambda s: list_instances(s))
    by_status = Counter((i.server, i.status) for i in instances)
    restarts: Counter[str] = Counter()
    for instance in instances:
        restarts[instance.server] += instance.restart_count
    registry.instances.clear()
    registry.restarts.clear()
    for server in {i.server for i in instances}:
        for status in InstanceStatus:
            registry.instances.labels(server, status.value).set(by_status[(server, status)])
        registry.restarts.labels(server).set(restarts[server])
    runtime = request.app.state.runtime
    if runtime is not None:
        registry.dropped.clear()
        for server, reasons in (await runtime.dropped()).items():
            for reason, count in reasons.items():
                registry.dropped.labels(server, reason).set(count)
        registry.dataplane_refused.set(await runtime.dataplane_refused())
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)


def metrics_app(app: Starlette) -> Starlette:
    """`/metrics` of `app` alone, without a token: for a port of its own."""
    only = Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])
    for shared in ("metrics", "context", "runtime"):
        setattr(only.state, shared, getattr(app.state, shared))
    only.state.limits = dataclasses.replace(app.state.limits, metrics_require_token=False)
    return only
