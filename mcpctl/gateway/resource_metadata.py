"""OAuth 2.0 Protected Resource Metadata (RFC 9728) for the MCP endpoints, and the Bearer
challenge (RFC 6750) that points a client to it.

A client given nothing but `https://mcpd/mcp/projects/demo` is answered 401 with
`WWW-Authenticate: Bearer resource_metadata=".../.well-known/oauth-protected-resource/mcp/
projects/demo"`; that document names the resource (the endpoint's canonical URL, the audience
its tokens must carry) and the OpenID provider that issues them.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcpctl.gateway.oidc import OidcVerifier, canonical

WELL_KNOWN = "/.well-known/oauth-protected-resource"
MCP_KINDS = ("servers", "projects")


@dataclass(frozen=True)
class ResourceServer:
    """mcpd as an OAuth resource server: the provider's verifier and mcpd's public URL
    (MCPD_PUBLIC_URL; without it, the URL the request came to)."""

    verifier: OidcVerifier
    public_url: str | None = None

    def base_url(self, conn: HTTPConnection) -> str:
        if self.public_url:
            return canonical(self.public_url)
        scheme = conn.url.scheme
        host = conn.headers.get("host") or conn.url.netloc
        return canonical(f"{scheme}://{host}")

    def endpoint_path(self, conn: HTTPConnection) -> str | None:
        """`/mcp/projects/<name>` (or servers) when the request is for an MCP endpoint."""
        parts = conn.scope["path"].split("/")
        if len(parts) >= 4 and parts[1] == "mcp" and parts[2] in MCP_KINDS and parts[3]:
            return "/".join(parts[:4])
        return None

    def audiences(self, conn: HTTPConnection) -> tuple[str, ...]:
        """What a token's `aud` must hold here: MCPD_OIDC_AUDIENCE, else the endpoint's
        canonical URL or mcpd's own (a token for any other resource is refused)."""
        if self.verifier.config.audiences:
            return self.verifier.config.audiences
        base = self.base_url(conn)
        path = self.endpoint_path(conn)
        return (base + path, base) if path else (base,)

    def metadata_url(self, conn: HTTPConnection) -> str:
        # Percent-encoded: the path and Host are the client's text, and this goes in a header.
        url = self.base_url(conn) + WELL_KNOWN + (self.endpoint_path(conn) or "")
        return quote(url, safe=":/@!$&'()*+,;=%[]")

    def challenge(
        self, conn: HTTPConnection, error: str | None = None, description: str | None = None
    ) -> str:
        parts = [f'resource_metadata="{self.metadata_url(conn)}"']
        if self.verifier.config.scopes:
            parts.append(f'scope="{" ".join(self.verifier.config.scopes)}"')
        if error:
            parts.append(f'error="{error}"')
        if description:
            parts.append(f'error_description="{_quoted(description)}"')
        return "Bearer " + ", ".join(parts)

    def document(self, request: Request, path: str) -> dict[str, object]:
        base = self.base_url(request)
        config = self.verifier.config
        return {
            "resource": config.audiences[0] if config.audiences else base + path,
            "authorization_servers": [config.issuer],
            "bearer_methods_supported": ["header"],
            "scopes_supported": list(config.scopes),
            "resource_name": f"mcpctl {path.strip('/').replace('/', ' ') or 'gateway'}",
        }


def _quoted(text: str) -> str:
    """RFC 6750 error_description: printable ASCII without `"` and `\\`."""
    return "".join(c for c in text if 0x20 <= ord(c) <= 0x7E and c not in '"\\')


def resource_server(conn: HTTPConnection) -> ResourceServer | None:
    server: ResourceServer | None = getattr(conn.app.state, "oauth", None)
    return server


def challenge(
    conn: HTTPConnection, error: str | None = None, description: str | None = None
) -> str:
    """The `WWW-Authenticate` value of a 401: with the metadata URL when mcpd accepts the
    provider's tokens, plain `Bearer` (with the error, if any) otherwise."""
    server = resource_server(conn)
    if server is not None:
        return server.challenge(conn, error, description)
    if error is None:
        return "Bearer"
    described = f', error_description="{_quoted(description)}"' if description else ""
    return f'Bearer error="{error}"{described}'


async def protected_resource(request: Request) -> Response:
    server = resource_server(request)
    if server is None:
        return JSONResponse({"message": "this mcpd accepts no OAuth tokens"}, status_code=404)
    kind, name = request.path_params.get("kind"), request.path_params.get("name")
    if kind is not None and kind not in MCP_KINDS:
        return JSONResponse({"message": "no such MCP endpoint"}, status_code=404)
    path = f"/mcp/{kind}/{name}" if kind else ""
    return JSONResponse(
        server.document(request, path), headers={"Cache-Control": "public, max-age=300"}
    )


def routes() -> list[Route]:
    return [
        Route(WELL_KNOWN, protected_resource, methods=["GET"]),
        Route(WELL_KNOWN + "/mcp/{kind:str}/{name:str}", protected_resource, methods=["GET"]),
    ]
