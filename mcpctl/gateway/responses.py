"""JSON-RPC responses of the MCP endpoints, shared by the transport (mcp_endpoint.py) and the
2026-07-28 single-exchange handling (single_exchange.py), so neither imports the other."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcpctl.gateway.targets import ServerTarget, Target
from mcpctl.mcp import jsonrpc, validation


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return jsonrpc.dumps(content)


def rpc_error(status: int, code: int, message: str, request_id: Any = None) -> JSONResponse:
    return FastJSONResponse(jsonrpc.error(request_id, code, message), status_code=status)


def endpoint_path(target: Target) -> str:
    """The endpoint as sessions and metrics name it: `servers/<name>` or `projects/<name>`."""
    return f"{'servers' if isinstance(target, ServerTarget) else 'projects'}/{target.name}"


def invalid(request: Request, target: Target, error: validation.Invalid) -> Response:
    """A malformed message: answered here, never forwarded to the shared backend."""
    request.app.state.metrics.refused.labels(endpoint_path(target), "invalid").inc()
    return FastJSONResponse(error.response(), status_code=400)
