"""`/metrics`: the gateway's own series plus instance gauges read from the store."""

from __future__ import annotations

from collections import Counter

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from mcpctl.gateway.context import context_of
from mcpctl.models.instance import InstanceStatus
from mcpctl.observability.metrics import Metrics
from mcpctl.store.repositories.instances import list_instances


async def metrics(request: Request) -> Response:
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
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
