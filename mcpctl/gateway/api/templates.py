"""Instantiating a template creates a server from it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcpctl.gateway import policy
from mcpctl.gateway.api.operation import Operation, json_body
from mcpctl.gateway.api.resources import NameParams, to_json
from mcpctl.gateway.auth import Principal
from mcpctl.gateway.context import context_of
from mcpctl.models.base import Metadata
from mcpctl.models.kinds import SERVER, TEMPLATE, Resource
from mcpctl.models.server import ServerSpec
from mcpctl.models.template import InstantiateRequest
from mcpctl.store.errors import Conflict, NotFound


async def instantiate(request: Request, principal: Principal) -> Response:
    policy.require_admin(principal, "create servers")
    context = context_of(request)
    template_name = NameParams.of(request).name
    ask = InstantiateRequest.model_validate(await json_body(request))

    def work(session: Session) -> dict[str, Any]:
        template = context.repositories[TEMPLATE].get(session, template_name)
        servers = context.repositories[SERVER]
        try:
            servers.get(session, ask.name)
        except NotFound:
            pass
        else:
            raise Conflict(f"server {ask.name!r} already exists")
        spec = template.spec.render(ask.parameters)
        server = Resource[ServerSpec](kind=SERVER.name, metadata=Metadata(name=ask.name), spec=spec)
        servers.put(session, server, principal.email)
        return to_json(servers.get(session, ask.name))

    body = await context.transaction(work)
    context.changed(SERVER, ask.name)
    return JSONResponse(body, status_code=201)


OPERATIONS = [
    Operation(
        "POST",
        "/api/v1/templates/{name}/instantiate",
        instantiate,
        "instantiate template",
        "templates",
        body=InstantiateRequest,
        params=NameParams,
        responses={201: Resource[ServerSpec]},
    ),
]
