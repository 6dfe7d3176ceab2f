"""The login and consent app of the test OpenID provider (Ory Hydra): it accepts every login
without a page, so tests and `mcpctl login` run headless against a real authorization server.

Who logs in: the authorization request's `login_hint` (default `alice@example.com`), which is
the token's subject. What the access token says: `email` (the subject), `email_verified: true`
and `groups` (from the users table, seeded by IDP_USERS as `{"email": ["group", ...]}` and
changed with `POST /users {"email", "groups", "claims"}`, where `claims` replace or add any
claim, of any JSON type, for tests of what a provider may send). Its audience:
what the client asked for, by Hydra's `audience` or by RFC 8707's `resource` parameter (Hydra
2.3 knows only the former, so the app reads the latter from the original request URL).

Run: python -m tests.idp.login_consent --port P --admin http://127.0.0.1:HYDRA_ADMIN_PORT
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

DEFAULT_USER = "alice@example.com"


def build(admin: str) -> Starlette:
    users: dict[str, list[str]] = json.loads(os.environ.get("IDP_USERS") or "{}")
    extra_claims: dict[str, dict[str, Any]] = {}
    http = httpx.AsyncClient(base_url=admin.rstrip("/") + "/admin/oauth2/auth/requests", timeout=10)

    async def call(method: str, path: str, challenge: str, body: Any = None) -> Any:
        kind = path.split("/")[0]
        response = await http.request(
            method, path, params={f"{kind}_challenge": challenge}, json=body
        )
        response.raise_for_status()
        return response.json()

    def original(request: dict[str, Any]) -> dict[str, list[str]]:
        return parse_qs(urlparse(request.get("request_url", "")).query)

    async def login(request: Request) -> Response:
        challenge = request.query_params["login_challenge"]
        asked = await call("GET", "login", challenge)
        hint = (asked.get("oidc_context") or {}).get("login_hint") or original(asked).get(
            "login_hint", [DEFAULT_USER]
        )[0]
        subject = asked["subject"] if asked.get("skip") else hint
        done = await call("PUT", "login/accept", challenge, {"subject": subject, "remember": False})
        return RedirectResponse(done["redirect_to"], status_code=302)

    async def consent(request: Request) -> Response:
        challenge = request.query_params["consent_challenge"]
        asked = await call("GET", "consent", challenge)
        email = asked["subject"]
        audience = list(asked.get("requested_access_token_audience") or [])
        audience += [r for r in original(asked).get("resource", []) if r not in audience]
        claims = {"email": email, "email_verified": True, "groups": users.get(email, [])}
        claims.update(extra_claims.get(email, {}))
        body = {
            "grant_scope": asked.get("requested_scope") or [],
            "grant_access_token_audience": audience,
            "remember": False,
            "session": {"access_token": claims, "id_token": claims},
        }
        done = await call("PUT", "consent/accept", challenge, body)
        return RedirectResponse(done["redirect_to"], status_code=302)

    async def set_user(request: Request) -> Response:
        body = await request.json()
        users[body["email"]] = list(body.get("groups") or [])
        extra_claims[body["email"]] = dict(body.get("claims") or {})
        return JSONResponse({"email": body["email"], "groups": users[body["email"]]})

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/login", login),
            Route("/consent", consent),
            Route("/users", set_user, methods=["POST"]),
            Route("/health", health),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--admin", required=True, help="Hydra's admin URL")
    args = parser.parse_args()
    uvicorn.run(build(args.admin), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
