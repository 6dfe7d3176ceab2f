"""Bearer-token authentication: the token's user becomes `request.user`.

Two kinds of token: mcpd's API tokens (`mcp_...`, looked up in the store) and, with
MCPD_OIDC_ISSUER, JWT access tokens of the team's OpenID provider (verified with its keys, the
audience checked against the endpoint asked: no token passthrough). Either is remembered
briefly by its hash, so MCP traffic pays neither a database round trip nor a signature check
per message."""

from __future__ import annotations

import asyncio
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

from mcpctl.gateway import audit, unauthenticated
from mcpctl.gateway.errors import error_response
from mcpctl.gateway.oidc import Identity, TokenRefused, looks_like_jwt
from mcpctl.gateway.resource_metadata import ResourceServer, challenge
from mcpctl.models.user import Role
from mcpctl.store import identities, tokens
from mcpctl.store.database import Database


@dataclass(frozen=True)
class Principal(BaseUser):
    email: str
    role: Role
    groups: tuple[str, ...] = ()  # from the OpenID provider's token; none for API tokens

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.email

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


class Refused(AuthenticationError):
    """A token refused, with the reason counted in mcpctl_auth_failures_total."""

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(description)
        self.reason = reason


# A cache entry: the principal, until when (monotonic), and for a JWT the audiences it holds.
Entry = tuple[Principal, float, frozenset[str] | None]


class TokenBackend(AuthenticationBackend):
    """Looks tokens up in the store (or verifies the OpenID provider's); a hit is remembered
    for `cache_seconds` so MCP traffic does not pay a database round trip per message (a
    revoked token lapses within that; a JWT never outlives its `exp`)."""

    def __init__(
        self,
        database: Database,
        cache: dict[str, Entry],
        cache_seconds: float = 5.0,
        oauth: ResourceServer | None = None,
    ) -> None:
        self.database = database
        self.cache_seconds = cache_seconds
        self.oauth = oauth
        self._cache = cache  # shared with the API, which empties it when tokens or users change
        self._lookups: dict[str, asyncio.Future[Entry]] = {}  # by token hash, while in flight

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        header = conn.headers.get("authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Refused("malformed", "the Authorization header must be 'Bearer <token>'")
        key = tokens.hash_token(token)
        cached = self._cache.get(key)
        if cached is None or cached[1] <= time.monotonic():
            budget = unauthenticated.budget_of(conn)
            if budget is not None and budget.exhausted(unauthenticated.source_address(conn)):
                # This address spent its budget of bad tokens: no lookup for it until it refills.
                raise Refused(unauthenticated.REASON, "too many requests without a valid token")
            cached = await self._authenticate_once(key, token)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = cached
        if cached[2] is not None:
            assert self.oauth is not None
            if not any(audience in cached[2] for audience in self.oauth.audiences(conn)):
                raise Refused(
                    "audience", "the token was not issued for this resource (its audience)"
                )
        return AuthCredentials(["authenticated"]), cached[0]

    async def _authenticate_once(self, key: str, token: str) -> Entry:
        """One lookup of a token at a time: when its entry lapses, every connection of a busy
        client finds it missing at once, and would each take a thread and a database
        connection for the same answer."""
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = self._lookups[key] = asyncio.ensure_future(self._authenticate(token))
            lookup.add_done_callback(lambda done: self._forget_lookup(key, done))
        return await asyncio.shield(lookup)  # a client that leaves does not cancel the others'

    def _forget_lookup(self, key: str, done: asyncio.Future[Entry]) -> None:
        if self._lookups.get(key) is done:
            del self._lookups[key]
        if not done.cancelled():
            done.exception()  # retrieved: a refusal nobody waits for any more is not logged

    async def _authenticate(self, token: str) -> Entry:
        if self.oauth is not None and looks_like_jwt(token):
            try:
                identity = await self.oauth.verifier.verify(token)
            except TokenRefused as refused:
                raise Refused(refused.reason, refused.description) from None
            principal = await run_in_threadpool(self._provision, identity)
            lifetime = min(self.cache_seconds, identity.expires_at - time.time())
            return principal, time.monotonic() + lifetime, identity.audiences
        found: Principal | None = await run_in_threadpool(self._lookup, token)
        if found is None:
            raise Refused("unknown_token", "invalid or expired token")
        return found, time.monotonic() + self.cache_seconds, None

    def _provision(self, identity: Identity) -> Principal:
        """The provider's account as the user it is bound to (see store/identities.py); an
        admin when the store says so or when in one of MCPD_OIDC_ADMIN_GROUPS."""
        assert self.oauth is not None
        account = identities.Account(
            issuer=identity.issuer,
            subject=identity.subject,
            email=identity.email,
            email_verified=identity.email_verified,
            display_name=identity.name,
        )
        try:
            with self.database.write_transaction() as session:
                bound = identities.provision(session, account)
        except identities.NotBound as refused:
            raise Refused(refused.reason, str(refused)) from None
        role = bound.role
        if self.oauth.verifier.config.admin_groups.intersection(identity.groups):
            role = Role.ADMIN
        return Principal(email=bound.email, role=role, groups=identity.groups)

    def _lookup(self, token: str) -> Principal | None:
        with self.database.transaction() as session:
            user = tokens.authenticate(session, token)
            if user is None:
                return None
            return Principal(email=user.email, role=Role(user.spec.get("role", "member")))


def on_auth_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    """401 with RFC 6750's `invalid_token` (and, with a provider, where to get a good one);
    503 when the provider's keys cannot be fetched (nothing is wrong with the token then)."""
    reason = exc.reason if isinstance(exc, Refused) else "invalid"
    if reason == unauthenticated.REASON:
        budget = unauthenticated.budget_of(conn)
        wait = budget.exhausted(unauthenticated.source_address(conn)) if budget else None
        return unauthenticated.too_many(conn, wait or 1.0)
    conn.app.state.metrics.auth_failures.labels(reason).inc()
    if reason == "issuer_unavailable":  # the token may well be good: try again, keep it
        unavailable = error_response(503, str(exc))
        unavailable.headers["Retry-After"] = "10"
        return unavailable
    if (limited := unauthenticated.over_budget(conn)) is not None:
        return limited
    audit.denied(conn, "invalid_token", reason, status=401)
    response = error_response(401, str(exc))
    response.headers["WWW-Authenticate"] = challenge(conn, "invalid_token", str(exc))
    return response


ANONYMOUS = UnauthenticatedUser()
