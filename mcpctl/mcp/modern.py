"""Backends that speak only MCP 2026-07-28: found with `server/discover`, called with the
per-request envelope.

Such a backend has no `initialize` handshake and no session: every request carries the
protocol version, the client's capabilities and identity in `params._meta`, and over
Streamable HTTP the `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers, and the
`Mcp-Param-*` headers its tools ask for with `x-mcp-header` (learnt from `tools/list`). The replica
puts a `ModernTransport` around the backend's transport, so the multiplexer and the gateway
keep sending plain (handshake-era shaped) requests on one session as for any backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any

from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PROTOCOL_VERSION_HEADER,
    NAME_BEARING_METHODS,
    encode_header_value,
    find_invalid_x_mcp_header,
    mcp_param_headers,
    x_mcp_header_map,
)

from mcpctl.mcp import bridge, jsonrpc
from mcpctl.mcp.http_transports import SdkTransport
from mcpctl.mcp.jsonrpc import Message
from mcpctl.mcp.transports import Transport
from mcpctl.mcp.versions import SINGLE_EXCHANGE_REVISIONS

log = logging.getLogger(__name__)
REVISION = SINGLE_EXCHANGE_REVISIONS[-1]
DISCOVER_ID = "mcpd-discover"
UNSUPPORTED_PROTOCOL_VERSION = -32022
HEADER_MISMATCH = -32020
MAX_TOOL_PAGES = 100  # of mcpd's own tools/list, to learn the tools' x-mcp-header
LIST_TIMEOUT = 30.0  # for each page of it
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
    (cancellations) passes as it is. Over HTTP, a `tools/call` gets the `Mcp-Param-*` headers
    of its tool's `x-mcp-header` annotations, known from the backend's `tools/list` results
    (mcpd lists the tools itself before calling one it has not seen), and tools whose
    annotations are invalid are left out of `tools/list`, as the spec asks of clients."""

    def __init__(
        self,
        inner: Transport,
        client_info: dict[str, Any],
        capabilities: dict[str, Any],
    ) -> None:
        self.inner = inner
        self.client_info = client_info
        self.capabilities = capabilities
        self._http = inner if isinstance(inner, SdkTransport) else None
        self._inbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        # x-mcp-header, per tool name: property path -> header token
        self._param_headers: dict[str, dict[tuple[str, ...], str]] = {}
        self._listed = False  # mcpd listed every tool since the last HeaderMismatch
        self._listing: asyncio.Future[None] | None = None
        self._lists: set[Any] = set()  # ids of clients' tools/list in flight
        self._calls: dict[Any, str] = {}  # ids of tools/call in flight -> tool
        self._own: dict[str, asyncio.Future[Message]] = {}  # mcpd's own requests
        self._own_ids = itertools.count(1)

    async def send(self, message: Message) -> None:
        method = message.get("method")
        if jsonrpc.is_request(message):
            if method in ANSWERED_HERE:
                self._inbox.put_nowait(jsonrpc.result(message["id"], {}))
                return
            enveloped = bridge.with_envelope(message, REVISION, self.capabilities, self.client_info)
            if self._http is None:
                await self.inner.send(enveloped)
                return
            headers = http_headers(enveloped)
            if method == "tools/list":
                self._lists.add(message["id"])
            elif method == "tools/call":
                headers.update(await self._tool_headers(message))
            await self._http.send(enveloped, headers=headers)
            return
        if method in NOT_SENT:
            return
        if method == "notifications/cancelled":  # its answer may never come (a closed POST)
            cancelled = (message.get("params") or {}).get("requestId")
            if isinstance(cancelled, int | str):
                self._lists.discard(cancelled)
                self._calls.pop(cancelled, None)
        await self.inner.send(message)

    async def receive(self) -> Message | None:
        self._start()
        return await self._inbox.get()

    def _start(self) -> None:
        if self._pump is None:
            self._pump = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            while (message := await self.inner.receive()) is not None:
                if self._http is not None and jsonrpc.is_response(message):
                    waiter = self._own.pop(str(message["id"]), None)
                    if waiter is not None:
                        if not waiter.done():
                            waiter.set_result(message)
                        continue
                    message = self._learn(message)
                self._inbox.put_nowait(message)
        finally:
            self._inbox.put_nowait(None)
            for waiter in self._own.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("the backend session ended"))

    def _learn(self, response: Message) -> Message:
        """A client's tools/list teaches the tools' headers; a HeaderMismatch unteaches."""
        request_id = response["id"]
        tool = self._calls.pop(request_id, None)
        error = response.get("error")
        if tool is not None and isinstance(error, dict) and error.get("code") == HEADER_MISMATCH:
            self._listed = False  # its tools may have changed: list them again on a call
            self._param_headers.pop(tool, None)
        if request_id not in self._lists:
            return response
        self._lists.discard(request_id)
        result = response.get("result")
        if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
            return response
        tools = self._remember(result["tools"])
        return {**response, "result": {**result, "tools": tools}}

    def _remember(self, tools: list[Any]) -> list[Any]:
        """The tools whose x-mcp-header annotations are valid, their headers remembered."""
        kept = []
        for tool in tools:
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                continue
            schema = tool.get("inputSchema")
            invalid = find_invalid_x_mcp_header(schema)
            if invalid is not None:
                log.warning("left out tool %r: invalid x-mcp-header (%s)", tool["name"], invalid)
                continue
            self._param_headers[tool["name"]] = x_mcp_header_map(schema)
            kept.append(tool)
        return kept

    async def _tool_headers(self, call: Message) -> dict[str, str]:
        params = call.get("params") or {}
        name = params.get("name")
        if not isinstance(name, str):
            return {}
        if name not in self._param_headers and not self._listed:
            await self._list_tools()
        self._calls[call["id"]] = name
        header_map = self._param_headers.get(name)
        arguments = params.get("arguments")
        if not header_map or not isinstance(arguments, dict):
            return {}
        return mcp_param_headers(header_map, arguments)

    async def _list_tools(self) -> None:
        """List every tool once (calls waiting for it share the one listing)."""
        if self._listing is None or self._listing.done():
            self._listing = asyncio.ensure_future(self._list_every_page())
        with contextlib.suppress(Exception):  # without the list, the call goes without
            await asyncio.shield(self._listing)

    async def _list_every_page(self) -> None:
        assert self._http is not None
        self._start()
        cursor: str | None = None
        for _ in range(MAX_TOOL_PAGES):
            request_id = f"mcpd-tools-{next(self._own_ids)}"
            params = {"cursor": cursor} if cursor else {}
            request = {"jsonrpc": "2.0", "id": request_id, "method": "tools/list", "params": params}
            enveloped = bridge.with_envelope(request, REVISION, self.capabilities, self.client_info)
            waiter: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
            self._own[request_id] = waiter
            try:
                await self._http.send(enveloped, headers=http_headers(enveloped))
                response = await asyncio.wait_for(waiter, LIST_TIMEOUT)
            finally:
                self._own.pop(request_id, None)
            result = response.get("result")
            if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
                break
            self._remember(result["tools"])
            cursor = result.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                break
        self._listed = True

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
