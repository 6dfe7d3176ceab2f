"""The verifier of the OpenID provider's tokens (mcpctl/gateway/oidc.py) with a provider made
here: its discovery document and JWKS served through an httpx MockTransport, its tokens signed
with PyJWT. What a real provider cannot be made to do: an HS256 token keyed with the public
key, a token without `exp`, a flood of unknown key ids. (tests/e2e/test_oauth.py covers the rest
against Ory Hydra.) Plus group members in project specs and in the policy."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError
from starlette.requests import HTTPConnection

from mcpctl.gateway.auth import Principal
from mcpctl.gateway.oidc import OidcConfig, OidcVerifier, TokenRefused, canonical
from mcpctl.gateway.policy import in_project
from mcpctl.gateway.resource_metadata import ResourceServer
from mcpctl.models.kinds import PROJECT
from mcpctl.models.project import ProjectSpec
from mcpctl.models.user import Role

ISSUER = "https://idp.example"


class Provider:
    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.jwks_fetches = 0
        self.rotate("k1")

    def rotate(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"})
        self.jwks_fetches += 1
        keys = []
        for kid, key in self.keys.items():
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return httpx.Response(200, json={"keys": keys})

    def token(self, kid: str = "k1", **claims: Any) -> str:
        body = {
            "iss": ISSUER,
            "aud": ["https://mcpd.example/mcp/projects/p"],
            "exp": int(time.time()) + 300,
            "sub": "alice-1",
            "email": "Alice@Example.com",
            "email_verified": True,
            "groups": ["platform"],
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self.keys[kid], algorithm="RS256", headers={"kid": kid})


def verifier(provider: Provider, **config: Any) -> OidcVerifier:
    options = {"issuer": ISSUER, "leeway_seconds": 0, **config}
    return OidcVerifier(OidcConfig(**options), transport=httpx.MockTransport(provider.handler))


def refused(verifier: OidcVerifier, token: str) -> str:
    with pytest.raises(TokenRefused) as caught:
        asyncio.run(verifier.verify(token))
    return caught.value.reason


def test_a_good_token_gives_the_identity() -> None:
    provider = Provider()
    identity = asyncio.run(verifier(provider).verify(provider.token()))
    assert (identity.issuer, identity.subject) == (ISSUER, "alice-1")
    assert identity.email == "alice@example.com" and identity.email_verified
    assert identity.groups == ("platform",)
    assert identity.audiences == {"https://mcpd.example/mcp/projects/p"}


def test_refusals_by_reason() -> None:
    provider = Provider()
    check = verifier(provider)
    assert refused(check, provider.token(exp=int(time.time()) - 5)) == "expired"
    assert refused(check, provider.token(iss="https://other.example")) == "issuer"
    assert refused(check, provider.token(exp=None)) == "invalid"  # exp is required
    assert refused(check, provider.token(email=None)) == "identity"
    assert refused(check, provider.token(sub=None)) == "identity"
    assert refused(check, provider.token(sub="a\x00b")) == "identity"  # PostgreSQL: a 500
    assert refused(check, provider.token(sub="x" * 256)) == "identity"
    assert refused(check, provider.token(email="not an email")) == "identity"
    assert refused(check, "not-a-jwt") == "malformed"
    header, payload, _ = provider.token().split(".")
    assert refused(check, f"{header}.{payload}.") == "signature"
    none = jwt.encode({"iss": ISSUER, "exp": int(time.time()) + 60}, None, algorithm="none")
    assert refused(check, none) == "unsigned"


def test_a_shared_secret_token_keyed_with_the_public_key_is_refused() -> None:
    """The classic key confusion: HS256 with the provider's public key as the secret."""
    provider = Provider()
    public = (
        provider.keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    signing_input = ".".join(
        b64(json.dumps(part).encode())
        for part in ({"alg": "HS256", "kid": "k1"}, {"iss": ISSUER, "exp": int(time.time()) + 60})
    )
    mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{b64(mac)}"
    assert refused(verifier(provider), forged) == "algorithm"


def test_an_unknown_key_fetches_the_keys_again_at_most_every_refresh_seconds() -> None:
    provider = Provider()
    check = verifier(provider, refresh_seconds=0.5)
    asyncio.run(check.verify(provider.token()))
    assert provider.jwks_fetches == 1
    for _ in range(20):  # a flood of made-up kids: no fetch within refresh_seconds
        assert refused(check, _with_kid(provider.token(), "made-up")) == "key"
    assert provider.jwks_fetches == 1
    provider.rotate("k2")  # the provider rotates: the new key is found after the interval
    time.sleep(0.6)
    identity = asyncio.run(check.verify(provider.token(kid="k2")))
    assert identity.email == "alice@example.com" and provider.jwks_fetches == 2


def test_an_unreachable_provider_is_not_the_token_s_fault() -> None:
    provider = Provider()
    down = OidcVerifier(
        OidcConfig(issuer=ISSUER), transport=httpx.MockTransport(lambda _: httpx.Response(502))
    )
    assert refused(down, provider.token()) == "issuer_unavailable"  # answered 503, not 401
    assert refused(down, provider.token()) == "issuer_unavailable"  # until the next fetch too


def _with_kid(token: str, kid: str) -> str:
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(header + "=="))
    encoded = base64.urlsafe_b64encode(json.dumps({**decoded, "kid": kid}).encode())
    return f"{encoded.decode().rstrip('=')}.{payload}.{signature}"


def test_claims_by_name_or_dotted_path() -> None:
    provider = Provider()
    check = verifier(provider, groups_claim="realm_access.roles", email_claim="upn")
    token = provider.token(upn="bob@example.com", realm_access={"roles": ["ops"]})
    identity = asyncio.run(check.verify(token))
    assert (identity.email, identity.groups) == ("bob@example.com", ("ops",))


@pytest.mark.parametrize(
    ("claims", "described"),
    [
        ({"groups": {"mcpctl-admins": False}}, "'groups' claim must be an array"),
        ({"groups": "mcpctl-admins"}, "'groups' claim must be an array"),
        ({"groups": ["ops", 7]}, "'groups' claim must be an array"),
        ({"groups": ["x" * 257]}, "'groups' claim must be an array"),
        ({"groups": [f"g{n}" for n in range(1001)]}, "'groups' claim must be an array"),
        ({"email": ["alice@example.com"]}, "'email' claim must be a string, not an array"),
        ({"email_verified": "true"}, "'email_verified' claim must be a boolean, not a string"),
        ({"email_verified": 1}, "'email_verified' claim must be a boolean, not a number"),
        ({"aud": 5}, "'aud' claim must be a string or an array, not a number"),
        ({"aud": ["ok", {"x": 1}]}, "'aud' claim must be strings"),
        ({"name": {"first": "A"}}, "'name' claim must be a string, not an object"),
    ],
)
def test_claims_of_the_wrong_type_are_refused_not_coerced(
    claims: dict[str, Any], described: str
) -> None:
    provider = Provider()
    with pytest.raises(TokenRefused) as caught:
        asyncio.run(verifier(provider).verify(provider.token(**claims)))
    assert caught.value.reason == "claim_type", caught.value.description
    assert described in caught.value.description


def test_email_verified_is_read_and_may_be_vouched_for_by_configuration() -> None:
    provider = Provider()
    unverified = provider.token(email_verified=False)
    assert not asyncio.run(verifier(provider).verify(unverified)).email_verified
    absent = provider.token(email_verified=None)
    assert not asyncio.run(verifier(provider).verify(absent)).email_verified
    trusting = verifier(provider, email_verified_claim="")
    assert asyncio.run(trusting.verify(unverified)).email_verified


def test_canonical_resource_urls() -> None:
    assert (
        canonical("HTTPS://MCPD.Example/mcp/projects/p/") == "https://mcpd.example/mcp/projects/p"
    )
    assert canonical("https://mcpd.example/#x") == "https://mcpd.example"


def test_group_members_in_specs_and_policy() -> None:
    spec = ProjectSpec.model_validate({"members": ["Bob@Example.com", " group:platform "]})
    assert spec.members == ["bob@example.com", "group:platform"]
    with pytest.raises(ValidationError):
        ProjectSpec.model_validate({"members": ["group:"]})
    with pytest.raises(ValidationError):
        ProjectSpec.model_validate({"members": ["not an email"]})
    project = PROJECT.parse(
        {
            "kind": "Project",
            "metadata": {"name": "p"},
            "spec": {"owner": "owner@example.com", "members": spec.members},
        }
    )
    member = Principal("carol@example.com", Role.MEMBER, ("sales", "platform"))
    outsider = Principal("dave@example.com", Role.MEMBER, ("sales",))
    assert in_project(member, project)
    assert not in_project(outsider, project)
    assert in_project(Principal("bob@example.com", Role.MEMBER), project)


def connection(path: str, host: str = "10.0.0.5:8420") -> HTTPConnection:
    scope = {
        "type": "http",
        "scheme": "http",
        "path": path,
        "query_string": b"",
        "headers": [(b"host", host.encode())],
        "server": ("10.0.0.5", 8420),
    }
    return HTTPConnection(scope)


def test_resource_urls_follow_the_public_url_or_the_request() -> None:
    provider = Provider()
    behind_proxy = ResourceServer(verifier(provider), "https://MCPD.example/")
    conn = connection("/mcp/projects/p/extra")
    assert behind_proxy.audiences(conn) == (
        "https://mcpd.example/mcp/projects/p",
        "https://mcpd.example",
    )
    assert behind_proxy.metadata_url(conn) == (
        "https://mcpd.example/.well-known/oauth-protected-resource/mcp/projects/p"
    )
    assert behind_proxy.audiences(connection("/api/v1/servers")) == ("https://mcpd.example",)
    direct = ResourceServer(verifier(provider))
    assert direct.audiences(connection("/mcp/servers/s", "mcpd.local:9000")) == (
        "http://mcpd.local:9000/mcp/servers/s",
        "http://mcpd.local:9000",
    )
    pinned = ResourceServer(verifier(provider, audiences=("api://mcpd",)), None)
    assert pinned.audiences(conn) == ("api://mcpd",)
    assert behind_proxy.challenge(conn, "invalid_token", 'bad "token"\n') == (
        'Bearer resource_metadata="https://mcpd.example/.well-known/oauth-protected-resource'
        '/mcp/projects/p", scope="openid email offline_access", error="invalid_token", '
        'error_description="bad token"'
    )
