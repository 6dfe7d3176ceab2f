"""Instances: read-only, and delete (the server's supervisor replaces a deleted instance)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from mcpctl.gateway import policy
from mcpctl.gateway.api.operation import Operation
from mcpctl.gateway.api.params import Digits, InstanceName, Name, Params
from mcpctl.gateway.auth import Principal
from mcpctl.gateway.context import context_of
from mcpctl.models.base import Model
from mcpctl.models.instance import Instance
from mcpctl.store.repositories import instances

MAX_TAIL = 1_000_000  # lines


class ListParams(Params):
    server: Name | None = None


class InstanceParams(Params):
    name: InstanceName


class LogParams(InstanceParams):
    follow: bool = False  # true/false, 1/0, yes/no, on/off
    tail: Annotated[int, Digits(0, MAX_TAIL)] | None = None  # start this many lines back


class InstanceList(Model):
    kind: str = "InstanceList"
    items: list[Instance]


def _json(model: Model) -> dict[str, object]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def list_instances(request: Request, principal: Principal) -> Response:
    policy.require_admin(principal, "read instances")
    server = ListParams.of(request).server
    items = await context_of(request).transaction(lambda s: instances.list_instances(s, server))
    return JSONResponse(_json(InstanceList(items=items)))


async def get_instance(request: Request, principal: Principal) -> Response:
    policy.require_admin(principal, "read instances")
    name = InstanceParams.of(request).name
    instance = await context_of(request).transaction(lambda s: instances.get_instance(s, name))
    return JSONResponse(_json(instance))


async def delete_instance(request: Request, principal: Principal) -> Response:
    policy.require_admin(principal, "delete instances")
    context = context_of(request)
    name = InstanceParams.of(request).name
    instance = await context.transaction(lambda s: instances.delete_instance(s, name))
    context.on_instance_deleted(instance.server, instance.replica)
    return Response(status_code=204)


async def instance_logs(request: Request, principal: Principal) -> Response:
    """The instance's output as text; `follow=true` keeps streaming, `tail=N` starts late."""
    policy.require_admin(principal, "read logs")
    params = LogParams.of(request)
    instance = await context_of(request).transaction(
        lambda s: instances.get_instance(s, params.name)
    )
    runtime = request.app.state.runtime
    if runtime is None:
        raise HTTPException(503, "mcpd runs no runtime")
    lines = runtime.logs(
        instance.server,
        instance.replica,
        instance.pod,
        params.follow,
        params.tail,
    )

    async def body() -> AsyncIterator[bytes]:
        async for line in lines:
            yield line.encode()

    return StreamingResponse(body(), media_type="text/plain; charset=utf-8")


BASE = "/api/v1/instances"
OPERATIONS = [
    Operation(
        "GET",
        BASE,
        list_instances,
        "list instances",
        "instances",
        params=ListParams,
        responses={200: InstanceList},
    ),
    Operation(
        "GET",
        BASE + "/{name}",
        get_instance,
        "get instance",
        "instances",
        params=InstanceParams,
        responses={200: Instance},
    ),
    Operation(
        "GET",
        BASE + "/{name}/logs",
        instance_logs,
        "instance logs",
        "instances",
        params=LogParams,
        responses={200: str},
    ),
    Operation(
        "DELETE",
        BASE + "/{name}",
        delete_instance,
        "delete instance",
        "instances",
        params=InstanceParams,
        responses={204: None},
    ),
]
