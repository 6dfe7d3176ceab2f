"""Who am I, and API tokens: members manage their own, admins anyone's."""

from __future__ import annotations

from uuid import UUID

from pydantic import Field
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcpctl.gateway import policy
from mcpctl.gateway.api.operation import Operation, json_body
from mcpctl.gateway.api.params import Email, Params
from mcpctl.gateway.auth import Principal
from mcpctl.gateway.context import context_of
from mcpctl.models.base import Model
from mcpctl.models.user import ApiToken, Role, TokenRequest
from mcpctl.store import tokens


class WhoAmI(Model):
    email: str
    role: Role
    # From the OpenID provider's token; none for API tokens.
    groups: list[str] = Field(default_factory=list)


class TokenList(Model):
    items: list[ApiToken]


class TokensParams(Params):
    name: Email  # the user's


class TokenParams(TokensParams):
    token: UUID


def _require_self_or_admin(principal: Principal, email: str) -> None:
    if not principal.is_admin and principal.email != email:
        raise policy.forbidden("members may manage only their own tokens")


async def whoami(request: Request, principal: Principal) -> Response:
    me = {"email": principal.email, "role": principal.role.value, "groups": list(principal.groups)}
    return JSONResponse(me)


async def list_tokens(request: Request, principal: Principal) -> Response:
    email = TokensParams.of(request).name
    _require_self_or_admin(principal, email)
    items = await context_of(request).transaction(lambda s: tokens.list_tokens(s, email))
    return JSONResponse(TokenList(items=items).model_dump(mode="json", by_alias=True))


async def create_token(request: Request, principal: Principal) -> Response:
    email = TokensParams.of(request).name
    _require_self_or_admin(principal, email)
    token_request = TokenRequest.model_validate(await json_body(request))

    def work(session: Session) -> ApiToken:
        return tokens.issue(session, email, token_request)

    token = await context_of(request).transaction(work)
    return JSONResponse(token.model_dump(mode="json", by_alias=True), status_code=201)


async def revoke_token(request: Request, principal: Principal) -> Response:
    params = TokenParams.of(request)
    email, token_id = params.name, str(params.token)
    _require_self_or_admin(principal, email)
    context = context_of(request)
    await context.transaction(lambda s: tokens.revoke(s, email, token_id))
    context.token_cache.clear()  # the token stops working at once
    return Response(status_code=204)


TOKENS = "/api/v1/users/{name}/tokens"
OPERATIONS = [
    Operation("GET", "/api/v1/whoami", whoami, "who am i", "users", responses={200: WhoAmI}),
    Operation(
        "GET",
        TOKENS,
        list_tokens,
        "list tokens",
        "users",
        responses={200: TokenList},
        params=TokensParams,
    ),
    Operation(
        "POST",
        TOKENS,
        create_token,
        "create token",
        "users",
        body=TokenRequest,
        responses={201: ApiToken},
        params=TokensParams,
    ),
    Operation(
        "DELETE",
        TOKENS + "/{token}",
        revoke_token,
        "revoke token",
        "users",
        responses={204: None},
        params=TokenParams,
    ),
]
