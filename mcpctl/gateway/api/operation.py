"""An API operation: its route plus what the OpenAPI document says of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mcpctl.gateway.api.params import Params
from mcpctl.gateway.auth import Principal
from mcpctl.gateway.unauthenticated import over_budget

Handler = Callable[[Request, Principal], Awaitable[Response]]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    body: Any = None  # a type pydantic can describe, or None
    responses: dict[int, Any] = field(default_factory=dict)  # status -> type (None: no body)
    params: type[Params] | None = None  # its path and query parameters
    public: bool = False

    def route(self) -> Route:
        async def endpoint(request: Request) -> Response:
            principal = request.user
            if not isinstance(principal, Principal) and not self.public:
                if (limited := over_budget(request)) is not None:
                    return limited
                raise HTTPException(
                    401,
                    "authentication required: send 'Authorization: Bearer <token>'",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if self.params is not None:
                self.params.of(request)  # a 422 naming the parameter before the handler runs
            return await self.handler(request, principal)

        return Route(self.path, endpoint, methods=[self.method], name=self.operation_id)

    @property
    def operation_id(self) -> str:
        words = self.summary.lower().replace("/", " ").split()
        return "_".join(words)


async def json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as error:
        raise HTTPException(400, f"request body is not valid JSON: {error}") from None
