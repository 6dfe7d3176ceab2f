"""Bearer-token authentication: the token's user becomes `request.user`."""

from __future__ import annotations

import time
from dataclasses import dataclass

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
    UnauthenticatedUser,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.responses import Response

from mcpctl.gateway.errors import error_response
from mcpctl.models.user import Role
from mcpctl.store import tokens
from mcpctl.store.database import Database


@dataclass(frozen=True)
class Principal(BaseUser):
    email: str
    role: Role

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.email

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


class TokenBackend(AuthenticationBackend):
    """Looks tokens up in the store; a hit is remembered for `cache_seconds` so MCP traffic
    does not pay a database round trip per message (a revoked token lapses within that)."""

    def __init__(
        self,
        database: Database,
        cache: dict[str, tuple[Principal, float]],
        cache_seconds: float = 5.0,
    ) -> None:
        self.database = database
        self.cache_seconds = cache_seconds
        self._cache = cache  # shared with the API, which empties it when tokens or users change

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        header = conn.headers.get("authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("the Authorization header must be 'Bearer <token>'")
        key = tokens.hash_token(token.strip())
        cached = self._cache.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return AuthCredentials(["authenticated"]), cached[0]
        principal = await run_in_threadpool(self._lookup, token.strip())
        if principal is None:
            self._cache.pop(key, None)
            raise AuthenticationError("invalid or expired token")
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (principal, time.monotonic() + self.cache_seconds)
        return AuthCredentials(["authenticated"]), principal

    def _lookup(self, token: str) -> Principal | None:
        with self.database.transaction() as session:
            user = tokens.authenticate(session, token)
            if user is None:
                return None
            return Principal(email=user.email, role=Role(user.spec.get("role", "member")))


def on_auth_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    response = error_response(401, str(exc))
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


ANONYMOUS = UnauthenticatedUser()
