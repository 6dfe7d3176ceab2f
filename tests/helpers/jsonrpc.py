"""JSON-RPC messages as tests write them by hand: requests, tool calls, the `initialize` of a
raw session, the 2026-07-28 envelope, and the answer inside an HTTP response."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

MODERN = "2026-07-28"
HANDSHAKE = "2025-11-25"  # the latest revision with an `initialize`
ACCEPT = {"Accept": "application/json, text/event-stream"}  # what a Streamable HTTP POST sends


def request(request_id: Any, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request; with `params=None` it has no `params` member (as a ping is often sent)."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def call(
    request_id: Any, tool: str, meta: dict[str, Any] | None = None, **arguments: Any
) -> dict[str, Any]:
    """`tools/call` of `tool` with `arguments` (and `_meta`, when given)."""
    params: dict[str, Any] = {"name": tool, "arguments": arguments}
    if meta is not None:
        params["_meta"] = meta
    return request(request_id, "tools/call", params)


def initialize(
    revision: str = HANDSHAKE, client: str = "raw", request_id: Any = 0
) -> dict[str, Any]:
    """The `initialize` request of a raw session: no capabilities, `client` as its name."""
    params = {
        "protocolVersion": revision,
        "capabilities": {},
        "clientInfo": {"name": client, "version": "1"},
    }
    return request(request_id, "initialize", params)


INIT = initialize()


def envelope(
    capabilities: dict[str, Any] | None = None, client: str | None = "raw"
) -> dict[str, Any]:
    """The `_meta` a 2026-07-28 client puts on every request (no session, no handshake); with
    `client=None` without the optional clientInfo."""
    meta: dict[str, Any] = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {} if capabilities is None else capabilities,
    }
    if client is not None:
        meta["io.modelcontextprotocol/clientInfo"] = {"name": client, "version": "1"}
    return meta


def modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    """The headers a 2026-07-28 client sends beside a request (and ACCEPT)."""
    headers = {**ACCEPT, "MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    return {**headers, "Mcp-Name": name} if name is not None else headers


def answer_of(response: httpx.Response) -> dict[str, Any]:
    """The one message of a POST's answer: the JSON body, or the last event of an SSE body."""
    text = response.text
    if text.startswith("event:") or "data: " in text:
        text = text.rsplit("data: ", 1)[-1]
    return dict(json.loads(text))


async def collect(stream: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every message of an exchange's stream (the answer last)."""
    return [message async for message in stream]
