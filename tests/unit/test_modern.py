"""Era detection in the replica's handshake and the transport around a 2026-07-28-only
backend, on an in-memory transport (the real backend is in tests/e2e/test_modern_backends.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from mcpctl.mcp import jsonrpc, modern
from mcpctl.mcp.handshake import CLIENT_CAPABILITIES, CLIENT_INFO, HandshakeError, handshake
from mcpctl.mcp.http_transports import SdkTransport
from mcpctl.mcp.jsonrpc import Message
from mcpctl.mcp.transports import Transport

MODERN = "2026-07-28"
DISCOVERED = {
    "resultType": "complete",
    "supportedVersions": [MODERN],
    "capabilities": {"tools": {"listChanged": True}},
    "instructions": "Use me.",
    "ttlMs": 0,
    "cacheScope": "private",
    "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "new", "version": "2.0"}},
}
REFUSED = {"code": -32022, "message": "initialize is not accepted", "data": {"supported": [MODERN]}}

Answer = Callable[[Message], Message | None]


class Server(Transport):
    """Answers each request with `answer(request)` (None: no answer); records what it got."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.got: list[Message] = []
        self.inbox: asyncio.Queue[Message | None] = asyncio.Queue()

    async def send(self, message: Message) -> None:
        self.got.append(message)
        if jsonrpc.is_request(message) and (reply := self.answer(message)) is not None:
            self.inbox.put_nowait(reply)

    async def receive(self) -> Message | None:
        return await self.inbox.get()

    async def close(self) -> None:
        self.inbox.put_nowait(None)

    @property
    def methods(self) -> list[str]:
        return [str(m.get("method")) for m in self.got]


def handshake_era(message: Message) -> Message:
    if message["method"] == "initialize":
        info = {"name": "old", "version": "1"}
        result = {"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": info}
        return jsonrpc.result(message["id"], result)
    return jsonrpc.error(message["id"], jsonrpc.METHOD_NOT_FOUND, "Method not found")


def only_2026(discovered: dict[str, Any] = DISCOVERED) -> Answer:
    def answer(message: Message) -> Message:
        if message["method"] == "initialize":
            return {"jsonrpc": "2.0", "id": message["id"], "error": REFUSED}
        if message["method"] == "server/discover":
            return jsonrpc.result(message["id"], discovered)
        return jsonrpc.result(message["id"], {"resultType": "complete"})

    return answer


async def test_a_handshake_era_server_is_initialized_as_before() -> None:
    server = Server(handshake_era)
    result = await handshake(server, 5)
    assert result["protocolVersion"] == "2025-06-18"
    assert server.methods == ["initialize", "notifications/initialized"]
    assert server.got[0]["params"]["protocolVersion"] == "2025-11-25"
    assert "_meta" not in server.got[0]["params"]


async def test_a_server_that_refuses_initialize_is_discovered() -> None:
    server = Server(only_2026())
    result = await handshake(server, 5)
    assert result == {
        "protocolVersion": MODERN,
        "capabilities": {"tools": {"listChanged": True}},
        "serverInfo": {"name": "new", "version": "2.0"},
        "instructions": "Use me.",
    }
    assert server.methods == ["initialize", "server/discover"]  # no notifications/initialized
    meta = server.got[1]["params"]["_meta"]
    assert meta == {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": CLIENT_CAPABILITIES,
        "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
    }


async def test_a_discovered_server_without_server_info_gets_a_placeholder() -> None:
    discovered = {k: v for k, v in DISCOVERED.items() if k not in ("_meta", "instructions")}
    result = await handshake(Server(only_2026(discovered)), 5)
    assert result["serverInfo"] == {"name": "unknown", "version": "unknown"}
    assert "instructions" not in result


async def test_a_server_that_refuses_both_fails_with_both_reasons() -> None:
    def refuse(message: Message) -> Message:
        return jsonrpc.error(message["id"], jsonrpc.INTERNAL_ERROR, f"no {message['method']}")

    with pytest.raises(HandshakeError) as failed:
        await handshake(Server(refuse), 5)
    assert str(failed.value) == (
        "initialize failed: no initialize; server/discover: no server/discover"
    )


async def test_a_server_that_offers_other_revisions_is_refused() -> None:
    discovered = {**DISCOVERED, "supportedVersions": ["2027-01-01"]}
    with pytest.raises(HandshakeError, match=r"offers \['2027-01-01'\], not 2026-07-28"):
        await handshake(Server(only_2026(discovered)), 5)


async def test_a_server_silent_after_refusing_initialize_times_out() -> None:
    def silent(message: Message) -> Message | None:
        return (
            {"jsonrpc": "2.0", "id": message["id"], "error": REFUSED}
            if message["method"] == "initialize"
            else None
        )

    with pytest.raises(HandshakeError, match=r"no answer to server/discover within 0\.2 s"):
        await handshake(Server(silent), 0.2)


async def test_a_closed_session_fails_the_handshake() -> None:
    server = Server(lambda message: None)
    await server.close()
    with pytest.raises(HandshakeError, match="closed its session before answering initialize"):
        await handshake(server, 5)


def test_wrap_leaves_handshake_era_backends_alone() -> None:
    server = Server(handshake_era)
    assert modern.wrap(server, {"protocolVersion": "2025-11-25"}, {}, {}) is server


async def test_requests_get_the_envelope_and_keep_their_meta() -> None:
    server = Server(only_2026())
    transport = modern.wrap(server, {"protocolVersion": MODERN}, CLIENT_INFO, CLIENT_CAPABILITIES)
    meta = {"progressToken": "7", "traceparent": "00-abc-def-01"}
    call = {"name": "echo", "arguments": {"text": "x"}, "_meta": meta}
    await transport.send({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": call})
    await transport.send({"jsonrpc": "2.0", "id": 8, "method": "tools/list"})
    sent_call, sent_list = server.got
    assert sent_call["params"]["_meta"] == {
        **meta,
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": CLIENT_CAPABILITIES,
        "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
    }
    assert sent_call["params"]["arguments"] == {"text": "x"}
    assert sent_list["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == MODERN
    assert [(await transport.receive() or {}).get("id") for _ in range(2)] == [7, 8]


async def test_what_2026_removed_is_answered_here_or_not_sent() -> None:
    server = Server(only_2026())
    transport = modern.wrap(server, {"protocolVersion": MODERN}, CLIENT_INFO, CLIENT_CAPABILITIES)
    await transport.send({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    await transport.send(
        {"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": "info"}}
    )
    await transport.send(jsonrpc.notification("notifications/initialized"))
    await transport.send(jsonrpc.notification("notifications/roots/list_changed"))
    cancel = jsonrpc.notification("notifications/cancelled", {"requestId": 9})
    await transport.send(cancel)
    assert server.got == [cancel]
    answers = [await transport.receive(), await transport.receive()]
    assert answers == [jsonrpc.result(1, {}), jsonrpc.result(2, {})]


async def test_the_end_of_the_backend_reaches_the_reader() -> None:
    server = Server(only_2026())
    transport = modern.wrap(server, {"protocolVersion": MODERN}, CLIENT_INFO, CLIENT_CAPABILITIES)
    await server.close()
    assert await asyncio.wait_for(transport.receive(), 5) is None
    await transport.close()


@pytest.mark.parametrize(
    ("method", "params", "name"),
    [
        ("tools/call", {"name": "echo"}, "echo"),
        ("prompts/get", {"name": "greet"}, "greet"),
        ("resources/read", {"uri": "modern://readme"}, "modern://readme"),
        ("tools/call", {"name": "écho"}, "=?base64?w6ljaG8=?="),
        ("tools/list", {}, None),
    ],
)
def test_http_headers(method: str, params: dict[str, Any], name: str | None) -> None:
    headers = modern.http_headers({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    expected = {"mcp-protocol-version": MODERN, "mcp-method": method}
    if name is not None:
        expected["mcp-name"] = name
    assert headers == expected


REGION_SCHEMA = {
    "type": "object",
    "properties": {"region": {"type": "string", "x-mcp-header": "Region"}, "text": {}},
}
BAD_SCHEMA = {"type": "object", "properties": {"n": {"type": "number", "x-mcp-header": "N"}}}
TOOLS = [
    {"name": "region", "inputSchema": REGION_SCHEMA},
    {"name": "bad", "inputSchema": BAD_SCHEMA},
    {"name": "plain", "inputSchema": {"type": "object"}},
]


class Http(SdkTransport):
    """An HTTP backend in memory: records each message with its headers."""

    def __init__(self, answer: Answer) -> None:  # no SDK transport underneath
        self.answer = answer
        self.got: list[tuple[Message, dict[str, str] | None]] = []
        self.inbox: asyncio.Queue[Message | None] = asyncio.Queue()

    async def send(self, message: Message, headers: dict[str, str] | None = None) -> None:
        self.got.append((message, headers))
        if jsonrpc.is_request(message) and (reply := self.answer(message)) is not None:
            self.inbox.put_nowait(reply)

    async def receive(self) -> Message | None:
        return await self.inbox.get()

    async def close(self) -> None:
        self.inbox.put_nowait(None)


def http_backend(mismatch: bool = False) -> Answer:
    def answer(message: Message) -> Message:
        if message["method"] == "tools/list":
            return jsonrpc.result(message["id"], {"resultType": "complete", "tools": TOOLS})
        if mismatch:
            return {
                "jsonrpc": "2.0",
                "id": message["id"],
                "error": {"code": -32020, "message": "x"},
            }
        return jsonrpc.result(message["id"], {"resultType": "complete", "content": []})

    return answer


def call(request_id: int, **arguments: Any) -> Message:
    params = {"name": "region", "arguments": arguments}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


async def test_a_call_before_any_list_lists_the_tools_for_their_headers() -> None:
    backend = Http(http_backend())
    transport = modern.wrap(backend, {"protocolVersion": MODERN}, CLIENT_INFO, CLIENT_CAPABILITIES)
    await transport.send(call(1, region="Zürich", text="hi"))
    (own_list, list_headers), (sent, headers) = backend.got
    assert own_list["method"] == "tools/list" and str(own_list["id"]).startswith("mcpd-")
    assert list_headers == {"mcp-protocol-version": MODERN, "mcp-method": "tools/list"}
    assert sent["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == MODERN
    assert headers == {
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": "region",
        "Mcp-Param-Region": "=?base64?WsO8cmljaA==?=",
    }
    # mcpd's own list is not a client's answer: only the call's answer comes out
    assert (await asyncio.wait_for(transport.receive(), 5) or {}).get("id") == 1
    await transport.send(call(2, region="eu", text="again"))  # known now: no second list
    assert [m["method"] for m, _ in backend.got] == ["tools/list", "tools/call", "tools/call"]
    assert (backend.got[-1][1] or {})["Mcp-Param-Region"] == "eu"


async def test_a_clients_list_teaches_headers_and_leaves_out_invalid_tools() -> None:
    backend = Http(http_backend())
    transport = modern.wrap(backend, {"protocolVersion": MODERN}, CLIENT_INFO, CLIENT_CAPABILITIES)
    await transport.send({"jsonrpc": "2.0", "id": 5, "method": "tools/list"})
    listed = await asyncio.wait_for(transport.receive(), 5)
    assert [t["name"] for t in (listed or {})["result"]["tools"]] == ["region", "plain"]
    await transport.send(call(6, region="eu", text="x"))
    assert [m["method"] for m, _ in backend.got] == ["tools/list", "tools/call"]  # no own list
    assert (backend.got[-1][1] or {})["Mcp-Param-Region"] == "eu"


async def test_a_header_mismatch_makes_mcpd_list_again() -> None:
    backend = Http(http_backend(mismatch=True))
    transport = modern.wrap(backend, {"protocolVersion": MODERN}, CLIENT_INFO, CLIENT_CAPABILITIES)
    await transport.send(call(1, region="eu", text="x"))
    refused = await asyncio.wait_for(transport.receive(), 5)
    assert (refused or {})["error"]["code"] == -32020  # the client sees the backend's error
    await transport.send(call(2, region="eu", text="x"))
    methods = [m["method"] for m, _ in backend.got]
    assert methods == ["tools/list", "tools/call", "tools/list", "tools/call"]
