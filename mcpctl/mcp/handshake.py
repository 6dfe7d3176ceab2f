"""The replica's own `initialize` with a backend, whose result it then serves from cache.

`initialize` goes first, as it always did: every handshake-era server answers it (a dual-era
one then keeps its session and its server-to-client requests), while the reactions of
handshake-era servers to an unknown request before `initialize` vary (an error, silence
until a timeout, an exit). A backend that speaks only 2026-07-28 refuses `initialize` with
an error; then `server/discover` (with the per-request envelope) finds it, and its
DiscoverResult is served in the shape of an InitializeResult with `protocolVersion`
2026-07-28, which tells the replica to call it through `modern.ModernTransport`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mcpctl import __version__
from mcpctl.mcp import jsonrpc, modern
from mcpctl.mcp.transports import Transport

# The newest revision with an initialize handshake; servers answer with what they speak.
BACKEND_PROTOCOL = "2025-11-25"
INIT_ID = "mcpd-initialize"
CLIENT_CAPABILITIES: dict[str, Any] = {
    "roots": {"listChanged": True},
    "sampling": {},
    "elicitation": {},
}
CLIENT_INFO: dict[str, Any] = {"name": "mcpd", "version": __version__}


class HandshakeError(RuntimeError):
    pass


async def handshake(transport: Transport, timeout: float) -> dict[str, Any]:
    """Initialize the session; return the server's InitializeResult (for a 2026-07-28-only
    server, its DiscoverResult in that shape)."""
    request = {
        "jsonrpc": "2.0",
        "id": INIT_ID,
        "method": "initialize",
        "params": {
            "protocolVersion": BACKEND_PROTOCOL,
            "capabilities": CLIENT_CAPABILITIES,
            "clientInfo": CLIENT_INFO,
        },
    }
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    await transport.send(request)
    response = await _answer(transport, INIT_ID, "initialize", deadline, timeout)
    if "error" in response:
        return await _discover(transport, response["error"], deadline, timeout)
    result: dict[str, Any] = response["result"]
    await transport.send(jsonrpc.notification("notifications/initialized"))
    return result


async def _discover(
    transport: Transport, refusal: dict[str, Any], deadline: float, timeout: float
) -> dict[str, Any]:
    """After `initialize` was refused: a server that speaks only 2026-07-28 answers
    `server/discover`; any other still fails with why it refused `initialize`."""
    refused = f"initialize failed: {refusal.get('message')}"
    await modern.send_request(transport, modern.discover_request(CLIENT_INFO, CLIENT_CAPABILITIES))
    response = await _answer(transport, modern.DISCOVER_ID, "server/discover", deadline, timeout)
    if "error" in response:
        raise HandshakeError(f"{refused}; server/discover: {response['error'].get('message')}")
    discovered = response["result"]
    result = modern.initialize_result(discovered) if isinstance(discovered, dict) else None
    if result is None:
        versions = discovered.get("supportedVersions") if isinstance(discovered, dict) else None
        raise HandshakeError(f"{refused}; server/discover offers {versions}, not {modern.REVISION}")
    return result


async def _answer(
    transport: Transport, request_id: str, method: str, deadline: float, timeout: float
) -> dict[str, Any]:
    try:
        async with asyncio.timeout_at(deadline):
            return await _await_response(transport, request_id, method)
    except TimeoutError:
        raise HandshakeError(f"no answer to {method} within {timeout:g} s") from None


async def _await_response(transport: Transport, request_id: str, method: str) -> dict[str, Any]:
    while True:
        message = await transport.receive()
        if message is None:
            raise HandshakeError(f"the server closed its session before answering {method}")
        if jsonrpc.is_response(message) and message.get("id") == request_id:
            return message
        if jsonrpc.is_request(message) and message.get("method") == "ping":
            await transport.send(jsonrpc.result(message["id"], {}))
