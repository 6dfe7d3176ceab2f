"""`mcpctl login` and `mcpctl logout`: the team's OpenID provider instead of an API token.

Authorization code + PKCE with a loopback redirect (RFC 8252): the URL is printed (and opened
in a browser where there is one), the provider redirects to `http://127.0.0.1:<port>/callback`.
`--device` uses the device authorization grant (RFC 8628) where the provider offers it. The
provider is found from mcpd itself (its protected resource metadata); the client is
`--client-id` or one registered dynamically (RFC 7591) and remembered.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
import sys
import threading
import time
import webbrowser
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import typer

from mcpctl.cli import oauth
from mcpctl.cli.client import Client
from mcpctl.cli.errors import CLIError
from mcpctl.cli.output import console
from mcpctl.cli.settings import Target, read_config, resolve, write_config

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.decode().rstrip("=")


class _Callback(HTTPServer):
    result: dict[str, str] | None = None


class _Handler(BaseHTTPRequestHandler):
    server: _Callback

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path != "/callback":
            self.send_error(404)
            return
        self.server.result = {key: values[0] for key, values in parse_qs(url.query).items()}
        ok = "code" in self.server.result
        self.send_response(200 if ok else 400)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.end_headers()
        self.wfile.write(
            b"mcpctl: logged in, you may close this tab.\n"
            if ok
            else b"mcpctl: the login failed, see the terminal.\n"
        )

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _register(provider: oauth.Provider, redirect_uri: str) -> str:
    endpoint = provider.endpoint("registration_endpoint")
    if endpoint is None:
        raise CLIError(
            f"the provider {provider.issuer} has no dynamic client registration: "
            "pass --client-id (a public client allowing a loopback redirect)"
        )
    body = {
        "client_name": "mcpctl",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token", DEVICE_GRANT]
        if provider.endpoint("device_authorization_endpoint")
        else ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": " ".join(provider.scopes),
        # Not in RFC 7591, ignored where unknown: providers with per-client audience
        # allow-lists (Hydra) check a refresh's audience against it.
        "audience": [provider.resource],
    }
    try:
        response = httpx.post(endpoint, json=body, timeout=oauth.TIMEOUT)
    except httpx.HTTPError as error:
        raise CLIError(f"cannot register mcpctl with the provider: {error}") from None
    if response.status_code not in (200, 201) or "client_id" not in response.json():
        raise CLIError(f"the provider refused to register mcpctl: {response.text[:200]}")
    return str(response.json()["client_id"])


def _authorization_code(
    provider: oauth.Provider, client_id: str | None, port: int, browser: bool, timeout: float
) -> tuple[dict[str, Any], str]:
    authorize = provider.endpoint("authorization_endpoint")
    token_endpoint = provider.endpoint("token_endpoint")
    if authorize is None or token_endpoint is None:
        raise CLIError(f"the provider {provider.issuer} has no authorization or token endpoint")
    try:
        callback = _Callback(("127.0.0.1", port), _Handler)
    except OSError as error:
        raise CLIError(f"cannot listen on 127.0.0.1:{port} for the redirect: {error}") from None
    with callback:
        redirect_uri = f"http://127.0.0.1:{callback.server_address[1]}/callback"
        client_id = client_id or _register(provider, redirect_uri)
        verifier, challenge = _pkce()
        state = secrets.token_urlsafe(24)
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(provider.scopes),
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": provider.resource,  # RFC 8707: a token for mcpd, and only for it
        }
        if "offline_access" in provider.scopes:
            query["prompt"] = "consent"
        url = f"{authorize}?{urlencode(query)}"
        _say(f"log in at: {url}")
        if browser:
            with contextlib.suppress(webbrowser.Error):
                webbrowser.open(url)
        thread = threading.Thread(target=_serve_until_called, args=(callback, timeout))
        thread.start()
        thread.join()
        result = callback.result
    if result is None:
        raise CLIError(f"no redirect from the provider within {timeout:.0f} s")
    if "error" in result:
        raise CLIError(
            f"the provider refused the login: {result.get('error_description') or result['error']}"
        )
    if not secrets.compare_digest(result.get("state", ""), state):
        raise CLIError("the redirect's state does not match this login (not ours): try again")
    tokens = oauth.token_request(
        token_endpoint,
        {
            "grant_type": "authorization_code",
            "code": result["code"],
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            "code_verifier": verifier,
            "resource": provider.resource,
        },
    )
    return tokens, client_id


def _serve_until_called(callback: _Callback, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    callback.timeout = 0.5
    while callback.result is None and time.monotonic() < deadline:
        callback.handle_request()


def _device(
    provider: oauth.Provider, client_id: str | None, timeout: float
) -> tuple[dict[str, Any], str]:
    endpoint = provider.endpoint("device_authorization_endpoint")
    token_endpoint = provider.endpoint("token_endpoint")
    if endpoint is None or token_endpoint is None:
        raise CLIError(
            f"the provider {provider.issuer} offers no device flow: log in without --device"
        )
    client_id = client_id or _register(provider, "http://127.0.0.1/callback")
    form = {
        "client_id": client_id,
        "scope": " ".join(provider.scopes),
        "resource": provider.resource,
    }
    try:
        response = httpx.post(endpoint, data=form, timeout=oauth.TIMEOUT)
        grant = response.json()
    except (httpx.HTTPError, ValueError) as error:
        raise CLIError(f"the device authorization request failed: {error}") from None
    if response.status_code != 200 or "device_code" not in grant:
        raise CLIError(f"the provider refused the device flow: {response.text[:200]}")
    where = grant.get("verification_uri_complete") or grant.get("verification_uri")
    _say(f"open {where} and enter the code {grant.get('user_code')}")
    interval = float(grant.get("interval") or 5)
    deadline = time.monotonic() + min(timeout, float(grant.get("expires_in") or timeout))
    while time.monotonic() < deadline:
        time.sleep(interval)
        try:
            polled = httpx.post(
                token_endpoint,
                data={"grant_type": DEVICE_GRANT, "device_code": grant["device_code"], **form},
                timeout=oauth.TIMEOUT,
            )
            body = polled.json()
        except (httpx.HTTPError, ValueError) as error:
            raise CLIError(f"the device token request failed: {error}") from None
        if polled.status_code == 200 and "access_token" in body:
            return body, client_id
        refusal = body.get("error")
        if refusal == "slow_down":
            interval += 5
        elif refusal != "authorization_pending":
            raise CLIError(f"the device login failed: {body.get('error_description') or refusal}")
    raise CLIError(f"the device login was not completed within {timeout:.0f} s")


def login(
    ctx: typer.Context,
    client_id: Annotated[
        str | None,
        typer.Option(
            envvar="MCPCTL_OIDC_CLIENT_ID",
            help="The provider's client for mcpctl (default: one registered dynamically).",
        ),
    ] = None,
    device: Annotated[bool, typer.Option(help="Use the device flow (no local browser).")] = False,
    browser: Annotated[bool, typer.Option(help="Open the login page in a browser.")] = True,
    port: Annotated[int, typer.Option(help="Loopback port for the redirect (0: any).")] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the login.")] = 300.0,
) -> None:
    """Log in with the team's OpenID provider; the token is kept in the config file."""
    invocation = ctx.find_root().obj
    server = resolve(invocation.server, "unused").server
    provider = oauth.discover(server)
    config = read_config()
    if client_id is None and config.get("oidc_issuer") == provider.issuer:
        client_id = config.get("oidc_client_id") or None
    if device:
        tokens, client_id = _device(provider, client_id, timeout)
    else:
        tokens, client_id = _authorization_code(provider, client_id, port, browser, timeout)
    me = Client(Target(server, str(tokens["access_token"]))).get("/api/v1/whoami")
    values = {key: value for key, value in config.items() if key not in oauth.KEYS}
    values.update(oauth.stored(tokens, provider, client_id))
    values["oidc_server"] = server
    values.setdefault("server", server)
    path = write_config(values)
    console.print(f"logged in to {server} as {me['email']} ({me['role']}); token saved to {path}")


def logout(ctx: typer.Context) -> None:
    """Forget the token of `mcpctl login` (API tokens in the config stay)."""
    config = read_config()
    values = {key: value for key, value in config.items() if key not in oauth.KEYS}
    path = write_config(values)
    console.print(f"logged out (removed the login from {path})")
