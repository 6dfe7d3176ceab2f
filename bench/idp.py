"""Tokens from the test OpenID provider (scripts/idp.sh): start it, set a user's groups,
play the browser's part of a login, mint an access token for a resource. For bench/auth.py and
the OAuth tests (tests/idp/tokens.py): here, since tests may import bench and bench never
imports tests."""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import httpx

REPO = Path(__file__).parents[1]
REDIRECT = "http://127.0.0.1:47999/callback"  # never listened on: the caller catches it


@dataclass(frozen=True)
class Idp:
    issuer: str
    admin: str
    login: str


def start_idp(port: str | None = None) -> Idp:
    env = {**os.environ, **({"MCPCTL_IDP_PORT": port} if port else {})}
    out = subprocess.run(
        [str(REPO / "scripts" / "idp.sh"), "start"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    ).stdout
    values = dict(re.findall(r"export (MCPCTL_TEST_OIDC_\w+)=(\S+)", out))
    return Idp(
        values["MCPCTL_TEST_OIDC_ISSUER"],
        values["MCPCTL_TEST_OIDC_ADMIN"],
        values["MCPCTL_TEST_OIDC_LOGIN"],
    )


def set_user(
    idp: Idp, email: str, groups: list[str], claims: dict[str, object] | None = None
) -> None:
    """`email` logs in as the subject `email`; `claims` replace the token's (any JSON)."""
    body = {"email": email, "groups": groups, "claims": claims or {}}
    httpx.post(f"{idp.login}/users", json=body).raise_for_status()


def play_browser(url: str, email: str, stop_at: str) -> str:
    """What a browser does with the authorization URL: the provider redirects to its login and
    consent app (which accepts `login_hint`) and back; returns the redirect to `stop_at`."""
    url += "&" + urlencode({"login_hint": email})
    with httpx.Client(timeout=30) as http:
        for _ in range(12):
            if url.startswith(stop_at):
                return url
            answer = http.get(url)
            assert answer.status_code in (302, 303), (answer.status_code, answer.text[:300])
            url = answer.headers["location"]
    raise AssertionError(f"no redirect to {stop_at}")


def mint(idp: Idp, email: str, resource: str, lifespan: str | None = None) -> str:
    """An access token for `email`, minted for `resource` by a client registered through the
    provider's admin API (authorization code + PKCE, as any client)."""
    client = httpx.post(
        f"{idp.admin}/admin/clients",
        json={
            "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": "openid email",
        },
    ).json()
    if lifespan:
        httpx.put(
            f"{idp.admin}/admin/clients/{client['client_id']}/lifespans",
            json={"authorization_code_grant_access_token_lifespan": lifespan},
        ).raise_for_status()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(sha256(verifier.encode()).digest()).decode().rstrip("=")
    query = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": REDIRECT,
        "scope": "openid email",
        "state": secrets.token_urlsafe(12),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": resource,
    }
    back = play_browser(f"{idp.issuer}/oauth2/auth?{urlencode(query)}", email, REDIRECT)
    code = parse_qs(urlparse(back).query)["code"][0]
    tokens = httpx.post(
        f"{idp.issuer}/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": client["client_id"],
            "code_verifier": verifier,
        },
    )
    assert tokens.status_code == 200, tokens.text
    return str(tokens.json()["access_token"])
