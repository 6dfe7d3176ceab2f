"""JWT access tokens of the team's OpenID provider: discovery, signing keys, verification.

PyJWT verifies; this module only finds the keys. Keys come from the provider's JWKS (found
through its discovery document) and are kept; a token signed with a key not seen yet makes
one fetch again (the provider rotated its keys), at most once per `refresh_seconds`, so a
flood of made-up key ids cannot turn mcpd into a load on the provider.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

# Asymmetric algorithms only: a shared-secret (HS*) token or `alg: none` never verifies
# against a provider's public key.
ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
DEFAULT_SCOPES = ("openid", "email", "offline_access")


@dataclass(frozen=True)
class OidcConfig:
    """MCPD_OIDC_*: which provider, which audience, and where identity sits in its tokens."""

    issuer: str
    audiences: tuple[str, ...] = ()  # empty: the endpoint's canonical URL (or mcpd's)
    email_claim: str = "email"
    groups_claim: str = "groups"
    admin_groups: frozenset[str] = frozenset()
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    refresh_seconds: float = 10.0
    leeway_seconds: float = 30.0
    http_timeout: float = 10.0


class TokenRefused(Exception):
    """Why a token was refused: `reason` is a metric label, `description` goes to the client
    (RFC 6750 `error_description`)."""

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(description)
        self.reason = reason
        self.description = description


@dataclass(frozen=True)
class Identity:
    email: str
    groups: tuple[str, ...]
    audiences: frozenset[str]  # canonical
    expires_at: float  # epoch seconds
    name: str = ""


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("ey")


@dataclass
class OidcVerifier:
    config: OidcConfig
    transport: httpx.AsyncBaseTransport | None = None
    _keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    _jwks_uri: str | None = None
    _fetched_at: float = float("-inf")
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def verify(self, token: str) -> Identity:
        """The token's identity, or TokenRefused. The audience is checked by the caller (it
        depends on the endpoint asked)."""
        try:
            unverified = jwt.decode_complete(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenRefused("malformed", "the token is not a well-formed JWT") from None
        header = unverified["header"]
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm.lower() == "none":
            raise TokenRefused("unsigned", "the token is not signed (alg none)")
        if algorithm not in ALGORITHMS:
            raise TokenRefused("algorithm", f"the token's algorithm {algorithm!r} is not accepted")
        if unverified["payload"].get("iss") != self.config.issuer:
            # Before any key lookup: another issuer's token never makes mcpd fetch keys.
            raise TokenRefused("issuer", "the token was issued by another issuer")
        key = await self._key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self.config.issuer,
                leeway=self.config.leeway_seconds,
                options={"require": ["exp", "iss"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefused("expired", "the token has expired") from None
        except jwt.InvalidIssuerError:
            raise TokenRefused("issuer", "the token was issued by another issuer") from None
        except jwt.InvalidSignatureError:
            raise TokenRefused("signature", "the token's signature does not verify") from None
        except jwt.PyJWTError as error:
            raise TokenRefused("invalid", f"the token is invalid: {error}") from None
        return self._identity(claims)

    def _identity(self, claims: dict[str, Any]) -> Identity:
        email = _claim(claims, self.config.email_claim)
        if not isinstance(email, str) or "@" not in email:
            raise TokenRefused("identity", f"the token has no {self.config.email_claim!r} claim")
        groups = _claim(claims, self.config.groups_claim) or []
        if isinstance(groups, str):
            groups = [groups]
        audiences = claims.get("aud") or []
        if isinstance(audiences, str):
            audiences = [audiences]
        name = claims.get("name")
        return Identity(
            email=email,
            groups=tuple(str(group) for group in groups if isinstance(group, str | int)),
            audiences=frozenset(canonical(str(audience)) for audience in audiences),
            expires_at=float(claims["exp"]),
            name=name if isinstance(name, str) else "",
        )

    async def _key(self, kid: object) -> Any:
        if not isinstance(kid, str) and kid is not None:
            raise TokenRefused("malformed", "the token's key id is not a string")
        key = self._find(kid)
        if key is None and time.monotonic() - self._fetched_at >= self.config.refresh_seconds:
            async with self._lock:  # one fetch for all the requests that miss at once
                if self._find(kid) is None and (
                    time.monotonic() - self._fetched_at >= self.config.refresh_seconds
                ):
                    await self._fetch()
            key = self._find(kid)
        if key is None and not self._keys:  # the last fetch failed: not the token's fault
            raise TokenRefused("issuer_unavailable", "the issuer's signing keys are unavailable")
        if key is None:
            raise TokenRefused("key", "the token is signed with a key the issuer does not publish")
        return key.key

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is not None:
            return self._keys.get(kid)
        signing = [key for key in self._keys.values() if key.public_key_use in (None, "sig")]
        return signing[0] if len(signing) == 1 else None  # no kid: only with one key

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            async with httpx.AsyncClient(
                timeout=self.config.http_timeout, transport=self.transport
            ) as http:
                if self._jwks_uri is None:
                    self._jwks_uri = await self._discover(http)
                response = await http.get(self._jwks_uri)
                response.raise_for_status()
                jwks = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as error:
            raise TokenRefused(
                "issuer_unavailable", f"the issuer's signing keys cannot be fetched: {error}"
            ) from None
        self._keys = {key.key_id: key for key in jwks.keys if key.key_id}
        if not self._keys and jwks.keys:
            self._keys = {"": jwks.keys[0]}

    async def _discover(self, http: httpx.AsyncClient) -> str:
        url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        response = await http.get(url)
        response.raise_for_status()
        document = response.json()
        if document.get("issuer") != self.config.issuer:
            raise ValueError(f"the discovery document names issuer {document.get('issuer')!r}")
        uri = document.get("jwks_uri")
        if not isinstance(uri, str):
            raise ValueError("the discovery document has no jwks_uri")
        return uri


def _claim(claims: dict[str, Any], path: str) -> Any:
    """A claim by name, or by a dotted path into nested claims (`realm_access.roles`)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def canonical(url: str) -> str:
    """A resource URL compared as RFC 8707 and the MCP spec put it: scheme and host in lower
    case, no trailing slash, no fragment."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    host, slash, path = rest.partition("/")
    path = (slash + path).split("#", 1)[0].rstrip("/")
    return f"{scheme.lower()}://{host.lower()}{path}"
