"""Backends that speak only MCP 2026-07-28: found with `server/discover`, called with the
per-request envelope.

Such a backend has no `initialize` handshake and no session: every request carries the
protocol version, the client's capabilities and identity in `params._meta`, and over
Streamable HTTP the `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers. The replica
puts a `ModernTransport` around the backend's transport, so the multiplexer and the gateway
keep sending plain (handshake-era shaped) requests on one session as for any backend.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PROTOCOL_VERSION_HEADER,
    NAME_BEARING_METHODS,
    encode_header_value,
)

from mcpctl.mcp import bridge, jsonrpc
from mcpctl.mcp.http_transports import SdkTransport
from mcpctl.mcp.jsonrpc import Message
from mcpctl.mcp.transports import Transport
from mcpctl.mcp.versions import SINGLE_EXCHANGE_REVISIONS

REVISION = SINGLE_EXCHANGE_REVISIONS[-1]
DISCOVER_ID = "mcpd-discover"
UNSUPPORTED_PROTOCOL_VERSION = -32022
# Requests 2026-07-28 removed: answered here, as the backend would have no use for them.
ANSWERED_HERE = frozenset({"ping", "logging/setLevel"})
# Notifications 2026-07-28 removed: never sent.
NOT_SENT = frozenset({"notifications/initialized", "notifications/roots/list_changed"})


def discover_request(client_info: dict[str, Any], capabilities: dict[str, Any]) -> Message:
    request = {"jsonrpc": "2.0", "id": DISCOVER_ID, "method": "server/discover", "params": {}}
    return bridge.with_envelope(request, REVISION, capabilities, client_info)


def initialize_result(discovered: dict[str, Any]) -> dict[str, Any] | None:
    """An InitializeResult-shaped view of a DiscoverResult (what the gateway serves from),
    or None when the backend does not offer the revision mcpd speaks to such backends."""
    versions = discovered.get("supportedVersions")
    if not isinstance(versions, list) or REVISION not in versions:
        return None
    meta = discovered.get("_meta")
    server_info = meta.get(bridge.SERVER_INFO_KEY) if isinstance(meta, dict) else None
    result: dict[str, Any] = {
        "protocolVersion": REVISION,
        "capabilities": discovered.get("capabilities") or {},
        "serverInfo": server_info or {"name": "unknown", "version": "unknown"},
    }
    if discovered.get("instructions"):
        result["instructions"] = discovered["instructions"]
    return result


def http_headers(message: Message) -> dict[str, str]:
    """The Streamable HTTP headers of a 2026-07-28 request (SEP-2243)."""
    method = str(message.get("method"))
    headers = {MCP_PROTOCOL_VERSION_HEADER: REVISION, MCP_METHOD_HEADER: method}
    key = NAME_BEARING_METHODS.get(method)
    params = message.get("params")
    if key is not None and isinstance(params, dict) and isinstance(params.get(key), str):
        headers[MCP_NAME_HEADER] = encode_header_value(params[key])
    return headers


async def send_request(transport: Transport, request: Message) -> None:
    """Send an enveloped request, with its headers where the transport is HTTP."""
    if isinstance(transport, SdkTransport):
        await transport.send(request, headers=http_headers(request))
    else:
        await transport.send(request)


class ModernTransport(Transport):
    """A backend transport as the multiplexer expects one, over a 2026-07-28 backend:
    requests get the envelope (keeping the `_meta` keys they have, such as `progressToken`
    and `traceparent`), what 2026-07-28 removed is answered here or not sent, and the rest
    (cancellations) passes as it is."""

    def __init__(
        self,
        inner: Transport,
        client_info: dict[str, Any],
        capabilities: dict[str, Any],
    ) -> None:
        self.inner = inner
        self.client_info = client_info
        self.capabilities = capabilities
        self._inbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None

    async def send(self, message: Message) -> None:
        method = message.get("method")
        if jsonrpc.is_request(message):
            if method in ANSWERED_HERE:
                self._inbox.put_nowait(jsonrpc.result(message["id"], {}))
                return
            enveloped = bridge.with_envelope(message, REVISION, self.capabilities, self.client_info)
            await send_request(self.inner, enveloped)
            return
        if method in NOT_SENT:
            return
        await self.inner.send(message)

    async def receive(self) -> Message | None:
        if self._pump is None:
            self._pump = asyncio.get_running_loop().create_task(self._read())
        return await self._inbox.get()

    async def _read(self) -> None:
        try:
            while (message := await self.inner.receive()) is not None:
                self._inbox.put_nowait(message)
        finally:
            self._inbox.put_nowait(None)

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
        await self.inner.close()


def wrap(
    transport: Transport,
    result: dict[str, Any],
    client_info: dict[str, Any],
    capabilities: dict[str, Any],
) -> Transport:
    """The transport the multiplexer should use for a backend that answered `result`."""
    if result.get("protocolVersion") in SINGLE_EXCHANGE_REVISIONS:
        return ModernTransport(transport, client_info, capabilities)
    return transport
