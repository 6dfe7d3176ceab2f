"""Client notifications are small: a bound on each, checked before anything is sent on.

A notification travels to a backend's stdin, which every client of a shared backend writes
to; the ones clients send (initialized, cancelled, progress, roots/list_changed) carry a few
fields. One over `Limits.max_notification_bytes` (MCPD_MAX_NOTIFICATION_BYTES, 64 KiB) is
refused with 413 and a JSON-RPC error, and counted in
`mcpctl_mcp_refused_total{reason="notification_too_large"}`; nothing of its POST is sent.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mcpctl.gateway.limits import Limits
from mcpctl.gateway.responses import endpoint_path, rpc_error
from mcpctl.gateway.targets import Target
from mcpctl.mcp import jsonrpc


def oversized_notification(
    request: Request, target: Target, messages: list[Any]
) -> Response | None:
    """The hook of mcp_endpoint.post: None when every notification of this POST is within the
    bound, else the 413 to answer."""
    limits: Limits = request.app.state.limits
    limit = limits.max_notification_bytes
    for message in messages:
        if not (isinstance(message, dict) and jsonrpc.is_notification(message)):
            continue
        size = len(jsonrpc.dumps(message))
        if size > limit:
            request.app.state.metrics.refused.labels(
                endpoint_path(target), "notification_too_large"
            ).inc()
            text = f"Invalid Request: a notification of {size} bytes; the limit is {_size(limit)}"
            return rpc_error(413, jsonrpc.INVALID_REQUEST, text)
    return None


def _size(limit: int) -> str:
    return f"{limit // 1024} KiB" if limit % 1024 == 0 else f"{limit} bytes"
