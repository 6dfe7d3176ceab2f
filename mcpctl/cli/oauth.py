"""The OpenID provider's tokens as the CLI keeps them: discovery from mcpd's protected resource
metadata (RFC 9728), the provider's metadata, token requests and refresh. Stored in the CLI
config beside the API token, as `oidc_*` keys; `mcpctl login` writes them, every command reads
the access token and refreshes it shortly before it expires."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from mcpctl.cli.errors import CLIError

KEYS = (
    "oidc_server",
    "oidc_issuer",
    "oidc_resource",
    "oidc_client_id",
    "oidc_token_endpoint",
    "oidc_access_token",
    "oidc_refresh_token",
    "oidc_expires_at",
)
REFRESH_MARGIN_SECONDS = 30.0
TIMEOUT = 15.0


@dataclass(frozen=True)
class Provider:
    """What `mcpctl login` needs: the resource (mcpd) and its authorization server."""

    resource: str
    issuer: str
    scopes: tuple[str, ...]
    metadata: dict[str, Any]

    def endpoint(self, name: str) -> str | None:
        value = self.metadata.get(name)
        return value if isinstance(value, str) else None


def _get_json(http: httpx.Client, url: str, what: str) -> dict[str, Any]:
    try:
        response = http.get(url)
    except httpx.HTTPError as error:
        raise CLIError(f"cannot fetch {what} from {url}: {error}") from None
    if response.status_code != 200:
        raise CLIError(f"cannot fetch {what} from {url} (HTTP {response.status_code})")
    try:
        body = response.json()
    except ValueError:
        raise CLIError(f"{what} at {url} is not JSON") from None
    if not isinstance(body, dict):
        raise CLIError(f"{what} at {url} is not a JSON object")
    return body


def discover(server: str) -> Provider:
    """mcpd's protected resource metadata, then its first authorization server's metadata."""
    with httpx.Client(timeout=TIMEOUT) as http:
        url = f"{server}/.well-known/oauth-protected-resource"
        try:
            found = http.get(url)
        except httpx.HTTPError as error:
            raise CLIError(f"cannot reach mcpd at {server}: {error}") from None
        if found.status_code == 404:
            raise CLIError(f"mcpd at {server} accepts no logins (it has no MCPD_OIDC_ISSUER)")
        resource_metadata = _get_json(http, url, "mcpd's protected resource metadata")
        servers = resource_metadata.get("authorization_servers") or []
        if not servers or not isinstance(servers[0], str):
            raise CLIError(f"{url} names no authorization server")
        issuer = servers[0]
        metadata: dict[str, Any] | None = None
        for suffix in (
            "/.well-known/openid-configuration",
            "/.well-known/oauth-authorization-server",
        ):
            try:
                metadata = _get_json(http, issuer.rstrip("/") + suffix, "the provider's metadata")
                break
            except CLIError:
                continue
        if metadata is None:
            raise CLIError(f"cannot fetch the metadata of the provider {issuer}")
        if metadata.get("issuer") != issuer:
            raise CLIError(
                f"the provider's metadata names {metadata.get('issuer')!r}, not {issuer}"
            )
    scopes = resource_metadata.get("scopes_supported") or ["openid"]
    return Provider(
        resource=str(resource_metadata.get("resource") or server),
        issuer=issuer,
        scopes=tuple(str(scope) for scope in scopes),
        metadata=metadata,
    )


def token_request(endpoint: str, form: dict[str, str]) -> dict[str, Any]:
    """A token endpoint call; the provider's error as one line."""
    try:
        response = httpx.post(endpoint, data=form, timeout=TIMEOUT)
    except httpx.HTTPError as error:
        raise CLIError(f"cannot reach the provider's token endpoint {endpoint}: {error}") from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or "access_token" not in body:
        detail = body.get("error_description") or body.get("error") or response.text[:200]
        raise CLIError(f"the provider refused the token request: {detail}")
    return dict(body)


def stored(tokens: dict[str, Any], provider: Provider, client_id: str) -> dict[str, str]:
    """A token response as config keys."""
    expires_in = float(tokens.get("expires_in") or 3600)
    values = {
        "oidc_issuer": provider.issuer,
        "oidc_resource": provider.resource,
        "oidc_client_id": client_id,
        "oidc_token_endpoint": provider.endpoint("token_endpoint") or "",
        "oidc_access_token": str(tokens["access_token"]),
        "oidc_expires_at": str(int(time.time() + expires_in)),
    }
    if tokens.get("refresh_token"):
        values["oidc_refresh_token"] = str(tokens["refresh_token"])
    return values


def access_token(config: dict[str, str]) -> tuple[str | None, dict[str, str] | None]:
    """The stored access token, refreshed when it is about to expire: (token, the config to
    save if it changed). (None, None) when there is no login."""
    token = config.get("oidc_access_token")
    if not token:
        return None, None
    try:
        expires_at = float(config.get("oidc_expires_at") or 0)
    except ValueError:
        expires_at = 0.0
    if expires_at - REFRESH_MARGIN_SECONDS > time.time():
        return token, None
    refresh = config.get("oidc_refresh_token")
    endpoint = config.get("oidc_token_endpoint")
    if not refresh or not endpoint:
        raise CLIError("the login has expired and cannot be refreshed: run mcpctl login")
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh,
        "client_id": config.get("oidc_client_id", ""),
    }
    # No `resource` here: the refresh token keeps the audience it was granted (RFC 8707 makes
    # it optional, and providers that map it to an audience allow-list, as Hydra, refuse it).
    try:
        tokens = token_request(endpoint, form)
    except CLIError as error:
        raise CLIError(f"the login has expired ({error}): run mcpctl login") from None
    updated = dict(config)
    updated["oidc_access_token"] = str(tokens["access_token"])
    updated["oidc_expires_at"] = str(int(time.time() + float(tokens.get("expires_in") or 3600)))
    if tokens.get("refresh_token"):
        updated["oidc_refresh_token"] = str(tokens["refresh_token"])
    return updated["oidc_access_token"], updated
