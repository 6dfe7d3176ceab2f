"""W3C trace context as MCP carries it: `traceparent` (and `tracestate`) in a message's
`params._meta`. Tracing (observability/tracing.py) reads and writes it there; transports to
HTTP backends copy it into HTTP headers."""

from __future__ import annotations

from typing import Any

from mcpctl.mcp.jsonrpc import Message

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
CONTEXT_KEYS = (TRACEPARENT, TRACESTATE)


def meta(message: Message) -> dict[str, Any] | None:
    params = message.get("params")
    found = params.get("_meta") if isinstance(params, dict) else None
    return found if isinstance(found, dict) else None


def headers_of(message: Message) -> dict[str, str] | None:
    """HTTP headers carrying the trace context of a message's `_meta`, for HTTP backends."""
    found = meta(message)
    if found is None or not isinstance(found.get(TRACEPARENT), str):
        return None
    return {k: found[k] for k in CONTEXT_KEYS if isinstance(found.get(k), str)}
