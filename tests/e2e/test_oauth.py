"""mcpd as an OAuth 2.1 resource server, against a real OpenID provider (Ory Hydra, started by
scripts/idp.sh with the headless login/consent app of tests/idp).

The official SDK client, given nothing but a project's URL, is answered 401, finds the
provider through the protected resource metadata, registers itself, logs in with
authorization code + PKCE (its redirect handler plays the browser with httpx) and calls a
tool of a STDIO server started as users start them. Group membership opens the project;
without it the project does not exist. Refusals: expired, another issuer, another audience,
unsigned, tampered. `mcpctl login` and its refresh. A new signing key at the provider.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import httpx2
import pytest
import ray
from mcp.client import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from pydantic import AnyUrl

from tests.e2e.conftest import Mcpd, start_mcpd, stop_mcpd
from tests.e2e.gateway import start_ray
from tests.helpers import jsonrpc
from tests.helpers.jsonrpc import ACCEPT
from tests.helpers.mcpd import add_server
from tests.helpers.waiting import until
from tests.helpers.world import MISBEHAVING
from tests.idp.tokens import REDIRECT, REPO, Idp, mint, play_browser, set_user, start_idp

SECOND_IDP_PORT = "14464"
INIT = jsonrpc.initialize("2025-06-18")


@pytest.fixture(scope="module")
def idp() -> Idp:
    """The provider scripts/test.sh started, or one started here (built once, cached)."""
    if issuer := os.environ.get("MCPCTL_TEST_OIDC_ISSUER"):
        return Idp(
            issuer, os.environ["MCPCTL_TEST_OIDC_ADMIN"], os.environ["MCPCTL_TEST_OIDC_LOGIN"]
        )
    return start_idp()


@pytest.fixture(scope="module")
def mcpd(tmp_path_factory: pytest.TempPathFactory, idp: Idp) -> Iterator[Mcpd]:
    start_ray()
    env = {
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "MCPD_ACTOR_HOSTS": "1",
        "MCPD_OIDC_ISSUER": idp.issuer,
        "MCPD_OIDC_ADMIN_GROUPS": "mcpctl-admins",
        "MCPD_OIDC_LEEWAY_SECONDS": "0",
    }
    daemon = start_mcpd(tmp_path_factory.mktemp("oauth") / "data", env)
    admin = {"Authorization": f"Bearer {daemon.token}"}
    state = tmp_path_factory.mktemp("state")
    spec = {"command": sys.executable, "args": [str(MISBEHAVING), str(state)]}
    add_server(daemon, "tools", spec)
    for name, members in (("platform", ["group:platform"]), ("secret", [])):
        created = httpx.post(
            f"{daemon.url}/api/v1/projects",
            headers=admin,
            json={"metadata": {"name": name}, "spec": {"servers": ["tools"], "members": members}},
        )
        assert created.status_code == 201, created.text
    yield daemon
    stop_mcpd(daemon)


def initialize(mcpd: Mcpd, project: str, token: str | None) -> httpx.Response:
    headers = {**ACCEPT, **({"Authorization": f"Bearer {token}"} if token else {})}
    return httpx.post(f"{mcpd.url}/mcp/projects/{project}", json=INIT, headers=headers)


def challenge(answer: httpx.Response) -> dict[str, str]:
    header = answer.headers["www-authenticate"]
    assert header.startswith("Bearer "), header
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


class Memory:
    """The SDK's token storage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def sdk_auth(url: str, email: str) -> tuple[OAuthClientProvider, Memory]:
    """The SDK's OAuth provider for `url` alone, its browser played headless as `email`."""
    storage = Memory()
    landed: list[str] = []

    async def redirect(authorization_url: str) -> None:
        landed.append(play_browser(authorization_url, email, REDIRECT))

    async def callback() -> AuthorizationCodeResult:
        query = parse_qs(urlparse(landed.pop()).query)
        return AuthorizationCodeResult(code=query["code"][0], state=query["state"][0])

    metadata = OAuthClientMetadata(
        client_name="sdk e2e",
        redirect_uris=[AnyUrl(REDIRECT)],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    return OAuthClientProvider(url, metadata, storage, redirect, callback), storage


# -- discovery -----------------------------------------------------------------------------


def test_401_points_to_the_protected_resource_metadata(mcpd: Mcpd, idp: Idp) -> None:
    answer = initialize(mcpd, "platform", None)
    assert answer.status_code == 401
    fields = challenge(answer)
    url = f"{mcpd.url}/.well-known/oauth-protected-resource/mcp/projects/platform"
    assert fields["resource_metadata"] == url
    assert "openid" in fields["scope"].split()
    document = httpx.get(url).json()
    assert document["resource"] == f"{mcpd.url}/mcp/projects/platform"
    assert document["authorization_servers"] == [idp.issuer]
    assert document["bearer_methods_supported"] == ["header"]
    root = httpx.get(f"{mcpd.url}/.well-known/oauth-protected-resource").json()
    assert root["resource"] == mcpd.url
    assert (
        httpx.get(f"{mcpd.url}/.well-known/oauth-protected-resource/mcp/nope/x").status_code == 404
    )


# -- the official SDK client, from nothing but the URL ------------------------------------


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_sdk_client_logs_in_from_the_project_url_and_calls_a_tool(
    mcpd: Mcpd, idp: Idp, mode: str
) -> None:
    set_user(idp, "alice@example.com", ["platform"])
    url = f"{mcpd.url}/mcp/projects/platform"
    auth, storage = sdk_auth(url, "alice@example.com")
    async with (
        httpx2.AsyncClient(auth=auth, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert "tools__echo" in tools
        echoed = await client.call_tool("tools__echo", {"text": f"through oauth, {mode}"})
        assert f"through oauth, {mode}" in echoed.content[0].text
    assert storage.client is not None  # registered dynamically (RFC 7591)
    assert storage.tokens is not None and storage.tokens.refresh_token
    claims = json.loads(base64.urlsafe_b64decode(storage.tokens.access_token.split(".")[1] + "=="))
    assert claims["aud"] == [url]  # RFC 8707: minted for this endpoint alone
    admin = {"Authorization": f"Bearer {mcpd.token}"}
    user = httpx.get(f"{mcpd.url}/api/v1/users/alice@example.com", headers=admin)
    assert user.status_code == 200, user.text  # created on first sight...
    assert user.json()["spec"]["role"] == "member"  # ...as a member
    # The same token is no key to another project (its audience is the platform endpoint).
    refused = initialize(mcpd, "secret", storage.tokens.access_token)
    assert refused.status_code == 401
    assert challenge(refused)["error"] == "invalid_token"


async def test_without_the_group_the_project_does_not_exist(mcpd: Mcpd, idp: Idp) -> None:
    set_user(idp, "bob@example.com", ["sales"])
    token = mint(idp, "bob@example.com", f"{mcpd.url}/mcp/projects/platform")
    answer = initialize(mcpd, "platform", token)
    assert answer.status_code == 404, answer.text
    set_user(idp, "bob@example.com", ["platform"])
    assert initialize(mcpd, "platform", mint(idp, "bob@example.com", mcpd.url)).status_code == 200


def test_an_admin_group_makes_an_admin(mcpd: Mcpd, idp: Idp) -> None:
    set_user(idp, "root@example.com", ["mcpctl-admins"])
    token = mint(idp, "root@example.com", mcpd.url)
    me = httpx.get(f"{mcpd.url}/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert me.json() == {"email": "root@example.com", "role": "admin", "groups": ["mcpctl-admins"]}
    assert initialize(mcpd, "secret", mint(idp, "root@example.com", mcpd.url)).status_code == 200


# -- refusals --------------------------------------------------------------------------------


def refused(mcpd: Mcpd, token: str, described: str) -> None:
    answer = initialize(mcpd, "platform", token)
    assert answer.status_code == 401, answer.text
    fields = challenge(answer)
    assert fields["error"] == "invalid_token"
    assert described in fields["error_description"], fields
    assert fields["resource_metadata"].endswith("/mcp/projects/platform")


def test_expired_token_is_refused(mcpd: Mcpd, idp: Idp) -> None:
    set_user(idp, "alice@example.com", ["platform"])
    token = mint(idp, "alice@example.com", mcpd.url, lifespan="1s")
    time.sleep(2.1)
    refused(mcpd, token, "expired")


def test_token_for_another_resource_is_refused(mcpd: Mcpd, idp: Idp) -> None:
    token = mint(idp, "alice@example.com", "https://elsewhere.example/mcp")
    refused(mcpd, token, "not issued for this resource")


def test_unsigned_and_tampered_tokens_are_refused(mcpd: Mcpd, idp: Idp) -> None:
    header, payload, signature = mint(idp, "alice@example.com", mcpd.url).split(".")
    assert initialize(mcpd, "platform", f"{header}.{payload}.{signature}").status_code == 200

    def encode(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    unsigned = encode({"alg": "none", "typ": "JWT"})
    refused(mcpd, f"{unsigned}.{payload}.", "not signed")
    tampered = encode({**claims, "email": "root@example.com", "groups": ["mcpctl-admins"]})
    refused(mcpd, f"{header}.{tampered}.{signature}", "signature")


def test_token_of_another_issuer_is_refused(mcpd: Mcpd, idp: Idp) -> None:
    other = start_idp(SECOND_IDP_PORT)
    try:
        set_user(other, "alice@example.com", ["platform"])
        refused(mcpd, mint(other, "alice@example.com", mcpd.url), "another issuer")
    finally:
        subprocess.run(
            [str(REPO / "scripts" / "idp.sh"), "stop"],
            env={**os.environ, "MCPCTL_IDP_PORT": SECOND_IDP_PORT},
            check=False,
        )


def test_a_new_signing_key_is_picked_up(mcpd: Mcpd, idp: Idp) -> None:
    set_user(idp, "alice@example.com", ["platform"])
    assert initialize(mcpd, "platform", mint(idp, "alice@example.com", mcpd.url)).status_code == 200
    kid = f"rotated-{secrets.token_hex(4)}"
    made = httpx.post(
        f"{idp.admin}/admin/keys/hydra.jwt.access-token",
        json={"alg": "RS256", "use": "sig", "kid": kid},
    )
    assert made.status_code == 201, made.text
    token = mint(idp, "alice@example.com", mcpd.url)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["kid"] == kid
    # mcpd fetches the keys again for an unknown kid, at most every 10 s (a flood of made-up
    # kids must not turn it into a load on the provider).
    until(
        lambda: initialize(mcpd, "platform", token),
        lambda answer: answer.status_code == 200,
        timeout=15,
        interval=1,
        what=lambda answer: answer.text,
    )


def test_auth_failures_are_counted_by_reason(mcpd: Mcpd) -> None:
    initialize(mcpd, "platform", "mcp_not-a-token")
    text = httpx.get(f"{mcpd.url}/metrics").text
    counted = dict(re.findall(r'mcpctl_auth_failures_total\{reason="(\w+)"\} (\S+)', text))
    assert float(counted["unknown_token"]) >= 1
    for reason in ("expired", "audience", "unsigned", "signature", "issuer"):
        assert float(counted.get(reason, 0)) >= 1, (reason, counted)


# -- mcpctl login ----------------------------------------------------------------------------


def mcpctl(config: Path, mcpd: Mcpd, *argv: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "MCPCTL_TOKEN"}
    env |= {"MCPCTL_CONFIG": str(config), "MCPCTL_SERVER": mcpd.url}
    return subprocess.Popen(
        [sys.executable, "-c", "from mcpctl.cli.main import main; main()", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_mcpctl_login_stores_a_token_and_refreshes_it(mcpd: Mcpd, idp: Idp, tmp_path: Path) -> None:
    import yaml

    config = tmp_path / "config.yaml"
    set_user(idp, "carol@example.com", ["platform"])
    login = mcpctl(config, mcpd, "login", "--no-browser", "--timeout", "60")
    assert login.stderr is not None
    line = login.stderr.readline()
    assert line.startswith("log in at: "), line
    url = line.removeprefix("log in at: ").strip()
    loopback = parse_qs(urlparse(url).query)["redirect_uri"][0]
    assert loopback.startswith("http://127.0.0.1:") and loopback.endswith("/callback")
    back = play_browser(url, "carol@example.com", loopback)
    assert httpx.get(back).status_code == 200  # the CLI's loopback listener takes the code
    out, err = login.communicate(timeout=60)
    assert login.returncode == 0, err
    assert "logged in" in out and "carol@example.com (member)" in out
    stored = yaml.safe_load(config.read_text())
    assert stored["oidc_issuer"] == idp.issuer and stored["oidc_refresh_token"]

    whoami = mcpctl(config, mcpd, "whoami")
    out, err = whoami.communicate(timeout=60)
    assert (whoami.returncode, out.strip()) == (
        0,
        "carol@example.com (member; groups: platform)",
    ), err

    stored["oidc_expires_at"] = "0"  # as if it had expired: the next command refreshes it
    config.write_text(yaml.safe_dump(stored))
    whoami = mcpctl(config, mcpd, "whoami")
    out, err = whoami.communicate(timeout=60)
    assert (whoami.returncode, out.strip()) == (
        0,
        "carol@example.com (member; groups: platform)",
    ), err
    refreshed = yaml.safe_load(config.read_text())
    assert refreshed["oidc_access_token"] != stored["oidc_access_token"]
    assert float(refreshed["oidc_expires_at"]) > time.time()

    logout = mcpctl(config, mcpd, "logout")
    assert logout.wait(timeout=60) == 0
    assert "oidc_access_token" not in yaml.safe_load(config.read_text())


def mcpd_issuer(mcpd: Mcpd) -> str:
    resource = httpx.get(f"{mcpd.url}/.well-known/oauth-protected-resource").json()
    return str(resource["authorization_servers"][0])


def test_mcpctl_login_fails_in_one_line(tmp_path: Path, mcpd: Mcpd) -> None:
    config = tmp_path / "config.yaml"
    login = mcpctl(config, mcpd, "login", "--no-browser", "--timeout", "1")
    _, err = login.communicate(timeout=60)
    assert login.returncode == 1
    assert err.splitlines()[-1] == "error: no redirect from the provider within 1 s"
    device = mcpctl(config, mcpd, "login", "--device")  # Hydra 2.3 has no device flow
    _, err = device.communicate(timeout=60)
    assert device.returncode == 1
    assert err.strip() == (
        f"error: the provider {mcpd_issuer(mcpd)} offers no device flow: log in without --device"
    )


# -- who a provider's account may become (issue 18, defects 1 and 8) -------------------------


def as_token(mcpd: Mcpd, token: str, path: str = "/api/v1/whoami") -> httpx.Response:
    return httpx.get(f"{mcpd.url}{path}", headers={"Authorization": f"Bearer {token}"})


def create_user(mcpd: Mcpd, email: str, role: str) -> None:
    created = httpx.post(
        f"{mcpd.url}/api/v1/users",
        headers={"Authorization": f"Bearer {mcpd.token}"},
        json={"metadata": {"name": email}, "spec": {"role": role}},
    )
    assert created.status_code == 201, created.text


def refused_as(answer: httpx.Response, described: str) -> None:
    assert answer.status_code == 401, answer.text
    assert described in answer.json()["message"], answer.json()


def test_no_account_becomes_the_system_user(mcpd: Mcpd, idp: Idp) -> None:
    """The audit's token: `email: system@mcpctl.io, email_verified: false` was the admin."""
    set_user(idp, "mallory-1", [], {"email": "system@mcpctl.io", "email_verified": False})
    token = mint(idp, "mallory-1", mcpd.url)
    refused_as(as_token(mcpd, token), "has not verified")
    refused_as(as_token(mcpd, token, "/api/v1/secrets"), "has not verified")
    set_user(idp, "mallory-1", [], {"email": "SYSTEM@mcpctl.io"})  # verified, any case
    token = mint(idp, "mallory-1", mcpd.url)
    refused_as(as_token(mcpd, token), "mcpd's built-in user")
    refused_as(as_token(mcpd, token, "/api/v1/secrets"), "mcpd's built-in user")


def test_an_unverified_email_makes_no_user(mcpd: Mcpd, idp: Idp) -> None:
    set_user(idp, "hana-1", [], {"email": "hana@example.com", "email_verified": False})
    refused_as(as_token(mcpd, mint(idp, "hana-1", mcpd.url)), "has not verified")
    set_user(idp, "hana-1", [], {"email": "hana@example.com", "email_verified": "true"})
    refused_as(as_token(mcpd, mint(idp, "hana-1", mcpd.url)), "must be a boolean, not a string")
    admin = {"Authorization": f"Bearer {mcpd.token}"}
    assert httpx.get(f"{mcpd.url}/api/v1/users/hana@example.com", headers=admin).status_code == 404


def test_an_admin_made_in_mcpd_is_never_taken_over(mcpd: Mcpd, idp: Idp) -> None:
    """The audit's `ROOT@Example.com` became admin `root@example.com`: now a verified email is
    not enough to become an existing admin, in any case."""
    create_user(mcpd, "ops-admin@example.com", "admin")
    set_user(idp, "mallory-2", [], {"email": "OPS-ADMIN@Example.com"})
    refused_as(as_token(mcpd, mint(idp, "mallory-2", mcpd.url)), "is an admin created in mcpd")


def test_an_account_is_bound_to_the_user_it_became(mcpd: Mcpd, idp: Idp) -> None:
    set_user(idp, "dave-1", [], {"email": "dave@example.com"})
    me = as_token(mcpd, mint(idp, "dave-1", mcpd.url))
    assert me.status_code == 200 and me.json()["email"] == "dave@example.com", me.text
    # Another account of the provider with the same email (any case) does not become dave...
    set_user(idp, "eve-1", [], {"email": "Dave@Example.com"})
    refused_as(as_token(mcpd, mint(idp, "eve-1", mcpd.url)), "belongs to another account")
    # ...and dave's account stays dave when its email claim changes.
    set_user(idp, "dave-1", [], {"email": "dave.renamed@example.com"})
    me = as_token(mcpd, mint(idp, "dave-1", mcpd.url))
    assert me.status_code == 200 and me.json()["email"] == "dave@example.com", me.text


def test_a_member_an_admin_created_is_claimed_by_its_verified_account(mcpd: Mcpd, idp: Idp) -> None:
    create_user(mcpd, "frank@example.com", "member")
    set_user(idp, "frank-1", [], {"email": "frank@example.com"})
    me = as_token(mcpd, mint(idp, "frank-1", mcpd.url))
    assert me.json() == {"email": "frank@example.com", "role": "member", "groups": []}, me.text
    set_user(idp, "frank-2", [], {"email": "frank@example.com"})  # a second account: refused
    refused_as(as_token(mcpd, mint(idp, "frank-2", mcpd.url)), "belongs to another account")


@pytest.mark.parametrize(
    ("claims", "described"),
    [
        ({"groups": {"mcpctl-admins": False}}, "'groups' claim must be an array"),
        ({"groups": "mcpctl-admins"}, "'groups' claim must be an array"),
        ({"groups": [1, "mcpctl-admins"]}, "'groups' claim must be an array"),
        ({"email": 42}, "'email' claim must be a string, not a number"),
        ({"name": ["x"]}, "'name' claim must be a string, not an array"),
    ],
)
def test_claims_of_the_wrong_type_are_refused(
    mcpd: Mcpd, idp: Idp, claims: dict[str, Any], described: str
) -> None:
    """The audit's `{"groups": {"mcpctl-admins": false}}` made an admin of its keys."""
    set_user(idp, "grace-1", [], {"email": "grace@example.com", **claims})
    token = mint(idp, "grace-1", mcpd.url)
    refused_as(as_token(mcpd, token), described)
    refused_as(as_token(mcpd, token, "/api/v1/secrets"), described)
    text = httpx.get(f"{mcpd.url}/metrics").text
    assert re.search(r'mcpctl_auth_failures_total\{reason="claim_type"\} [1-9]', text)


def test_a_nul_in_the_path_never_reaches_the_challenge_header(mcpd: Mcpd) -> None:
    """With a provider, the 401 for `/mcp/projects/%00` put the NUL into WWW-Authenticate and
    uvicorn dropped the connection."""
    for path, encoded in (
        ("/mcp/projects/%00", "/mcp/projects/%00"),
        ("/mcp/projects/a%22b%0d%0aX:y", "/mcp/projects/a%22b%0D%0AX:y"),
        ("/mcp/servers/%ED%A0%80", "/mcp/servers/"),
    ):
        answer = httpx.post(f"{mcpd.url}{path}", json=INIT, headers=ACCEPT)
        assert answer.status_code == 401, (path, answer.text)
        header = answer.headers["www-authenticate"]
        assert header.isascii() and header.isprintable(), header
        assert encoded in challenge(answer)["resource_metadata"], header
