"""JWT access tokens of the team's OpenID provider: discovery, signing keys, verification.

PyJWT verifies; this module finds the keys and reads the claims. Keys come from the provider's
JWKS (found through its discovery document) and are kept. A token signed with a key not seen
yet makes one fetch again (the provider rotated its keys): one fetch in flight at a time, shared
by whoever waits for it, bounded by a total deadline, and none within `refresh_seconds` of the
last one's end, so neither a flood of made-up key ids nor a provider that trickles its answer
turns into a queue of logins.

Claims are read as the types OpenID Connect gives them; a claim of another type refuses the
token (an object where groups are expected is not its keys, "true" is not true).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from mcpctl.models.user import normalise_member_email

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
MAX_GROUPS = 1000
MAX_GROUP_LENGTH = 256
MAX_DOCUMENT_BYTES = 1 << 20  # a discovery document or a JWKS; real ones are a few KiB


@dataclass(frozen=True)
class OidcConfig:
    """MCPD_OIDC_*: which provider, which audience, and where identity sits in its tokens."""

    issuer: str
    audiences: tuple[str, ...] = ()  # empty: the endpoint's canonical URL (or mcpd's)
    email_claim: str = "email"
    email_verified_claim: str = "email_verified"  # empty: the provider verifies every email
    groups_claim: str = "groups"
    admin_groups: frozenset[str] = frozenset()
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    refresh_seconds: float = 10.0
    leeway_seconds: float = 30.0
    http_timeout: float = 10.0  # for a whole fetch of the keys, not per read


class TokenRefused(Exception):
    """Why a token was refused: `reason` is a metric label, `description` goes to the client
    (RFC 6750 `error_description`)."""

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(description)
        self.reason = reason
        self.description = description


@dataclass(frozen=True)
class Identity:
    issuer: str
    subject: str
    email: str  # validated, in the stored form
    email_verified: bool
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
    _next_fetch: float = float("-inf")  # monotonic: no fetch of the keys before this
    _fetching: asyncio.Future[None] | None = None
    fetches: int = 0  # how many fetches of the keys were started

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
                options={"require": ["exp", "iss", "sub"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefused("expired", "the token has expired") from None
        except jwt.InvalidIssuerError:
            raise TokenRefused("issuer", "the token was issued by another issuer") from None
        except jwt.InvalidSignatureError:
            raise TokenRefused("signature", "the token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as error:
            reason = "identity" if error.claim == "sub" else "invalid"
            raise TokenRefused(reason, f"the token has no {error.claim!r} claim") from None
        except jwt.PyJWTError as error:
            raise TokenRefused("invalid", f"the token is invalid: {error}") from None
        return self._identity(claims)

    def _identity(self, claims: dict[str, Any]) -> Identity:
        config = self.config
        subject = _typed(claims, "sub", str)
        if not (0 < len(subject) <= 255 and subject.isprintable()):
            # Bound as it is, never escaped: an escape could make two accounts one.
            raise TokenRefused(
                "identity", "the token's 'sub' claim must be 1 to 255 printable characters"
            )
        email = _typed(claims, config.email_claim, str)
        try:
            email = normalise_member_email(email)
        except ValueError:
            raise TokenRefused(
                "identity", f"the token's {config.email_claim!r} claim is not an email"
            ) from None
        verified = not config.email_verified_claim or _typed(
            claims, config.email_verified_claim, bool, default=False
        )
        groups = _typed(claims, config.groups_claim, list, default=[])
        if len(groups) > MAX_GROUPS or not all(
            isinstance(group, str) and 0 < len(group) <= MAX_GROUP_LENGTH for group in groups
        ):
            raise TokenRefused(
                "claim_type",
                f"the token's {config.groups_claim!r} claim must be an array of at most "
                f"{MAX_GROUPS} strings of 1 to {MAX_GROUP_LENGTH} characters",
            )
        audiences = _typed(claims, "aud", (str, list), default=[])
        if isinstance(audiences, str):
            audiences = [audiences]
        if not all(isinstance(audience, str) for audience in audiences):
            raise TokenRefused("claim_type", "the token's 'aud' claim must be strings")
        name = _typed(claims, "name", str, default="")
        return Identity(
            issuer=config.issuer,
            subject=subject,
            email=email,
            email_verified=verified,
            groups=tuple(groups),
            audiences=frozenset(canonical(audience) for audience in audiences),
            expires_at=float(claims["exp"]),
            name="".join(c for c in name if c.isprintable())[:256],
        )

    async def _key(self, kid: object) -> Any:
        if not isinstance(kid, str) and kid is not None:
            raise TokenRefused("malformed", "the token's key id is not a string")
        key = self._find(kid)
        if key is None:
            key = await self._refreshed(kid)
        return key.key

    async def _refreshed(self, kid: str | None) -> jwt.PyJWK:
        """The key after fetching the provider's keys again, where a fetch may be made. While
        one is in flight, a token with an unknown key waits for it only when mcpd has no keys
        yet (at start-up); otherwise it is refused at once: a made-up key id costs nothing."""
        fetching = self._fetching
        if fetching is None:
            if time.monotonic() < self._next_fetch:
                raise self._unknown_key()
            fetching = self._fetching = asyncio.ensure_future(self._fetch())
            fetching.add_done_callback(self._fetched)
            self.fetches += 1
        elif self._keys:
            raise TokenRefused(
                "key",
                "the token is signed with a key mcpd does not know yet (the issuer's keys are "
                "being fetched); try again",
            )
        await asyncio.shield(fetching)  # a client that leaves does not cancel the fetch
        key = self._find(kid)
        if key is None:
            raise self._unknown_key()
        return key

    def _fetched(self, done: asyncio.Future[None]) -> None:
        self._fetching = None
        self._next_fetch = time.monotonic() + self.config.refresh_seconds
        if not done.cancelled():
            done.exception()  # retrieved: a failure nobody waits for any more is not logged

    def _unknown_key(self) -> TokenRefused:
        if not self._keys:  # the last fetch failed: not the token's fault
            return TokenRefused("issuer_unavailable", "the issuer's signing keys are unavailable")
        return TokenRefused("key", "the token is signed with a key the issuer does not publish")

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is not None:
            return self._keys.get(kid)
        signing = [key for key in self._keys.values() if key.public_key_use in (None, "sig")]
        return signing[0] if len(signing) == 1 else None  # no kid: only with one key

    async def _fetch(self) -> None:
        timeout = self.config.http_timeout
        try:
            async with (
                asyncio.timeout(timeout),  # in all: a trickled answer resets no read timeout
                httpx.AsyncClient(timeout=timeout, transport=self.transport) as http,
            ):
                if self._jwks_uri is None:
                    self._jwks_uri = await self._discover(http)
                jwks = jwt.PyJWKSet.from_dict(await _document(http, self._jwks_uri))
        except TimeoutError:
            raise TokenRefused(
                "issuer_unavailable",
                f"the issuer's signing keys cannot be fetched: no full answer in {timeout:g} s",
            ) from None
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as error:
            raise TokenRefused(
                "issuer_unavailable", f"the issuer's signing keys cannot be fetched: {error}"
            ) from None
        keys = {key.key_id: key for key in jwks.keys if key.key_id}
        if not keys and jwks.keys:
            keys = {"": jwks.keys[0]}
        self._keys = keys

    async def _discover(self, http: httpx.AsyncClient) -> str:
        url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await _document(http, url)
        if document.get("issuer") != self.config.issuer:
            raise ValueError(f"the discovery document names issuer {document.get('issuer')!r}")
        uri = document.get("jwks_uri")
        if not isinstance(uri, str):
            raise ValueError("the discovery document has no jwks_uri")
        return uri


async def _document(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """A JSON object from the provider, read up to MAX_DOCUMENT_BYTES."""
    async with http.stream("GET", url) as response:
        response.raise_for_status()
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                raise ValueError(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError(f"{url} did not answer a JSON object")
    return document


_JSON_TYPES = {str: "a string", bool: "a boolean", list: "an array", dict: "an object"}
_REQUIRED: Any = object()


def _typed(claims: dict[str, Any], path: str, kind: Any, default: Any = _REQUIRED) -> Any:
    """A claim of the type OpenID gives it; a claim of another type refuses the token."""
    value = _claim(claims, path)
    if value is None:
        if default is _REQUIRED:
            raise TokenRefused("identity", f"the token has no {path!r} claim")
        return default
    if not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        wanted = " or ".join(_JSON_TYPES[k] for k in kinds)
        raise TokenRefused(
            "claim_type", f"the token's {path!r} claim must be {wanted}, not {_json_type(value)}"
        )
    return value


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return _JSON_TYPES.get(type(value), "a " + type(value).__name__)


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
