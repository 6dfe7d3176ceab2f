"""The replica's own `initialize` with a backend, whose result it then serves from cache."""

from __future__ import annotations

import asyncio
from typing import Any

from mcpctl import __version__
from mcpctl.mcp import jsonrpc
from mcpctl.mcp.transports import Transport

# The newest revision with an initialize handshake; servers answer with what they speak.
BACKEND_PROTOCOL = "2025-11-25"
INIT_ID = "mcpd-initialize"
CLIENT_CAPABILITIES: dict[str, Any] = {
    "roots": {"listChanged": True},
    "sampling": {},
    "elicitation": {},
}


class HandshakeError(RuntimeError):
    pass


async def handshake(transport: Transport, timeout: float) -> dict[str, Any]:
    """Initialize the session; return the server's InitializeResult."""
    request = {
        "jsonrpc": "2.0",
        "id": INIT_ID,
        "method": "initialize",
        "params": {
            "protocolVersion": BACKEND_PROTOCOL,
            "capabilities": CLIENT_CAPABILITIES,
            "clientInfo": {"name": "mcpd", "version": __version__},
        },
    }
    await transport.send(request)
    try:
        response = await asyncio.wait_for(_await_response(transport), timeout)
    except TimeoutError:
        raise HandshakeError(f"no answer to initialize within {timeout:g} s") from None
    if "error" in response:
        raise HandshakeError(f"initialize failed: {response['error'].get('message')}")
    result: dict[str, Any] = response["result"]
    await transport.send(jsonrpc.notification("notifications/initialized"))
    return result


async def _await_response(transport: Transport) -> dict[str, Any]:
    while True:
        message = await transport.receive()
        if message is None:
            raise HandshakeError("the server closed its session before answering initialize")
        if jsonrpc.is_response(message) and message.get("id") == INIT_ID:
            return message
        if jsonrpc.is_request(message) and message.get("method") == "ping":
            await transport.send(jsonrpc.result(message["id"], {}))
