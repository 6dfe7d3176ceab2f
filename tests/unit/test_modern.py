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
from mcpctl.mcp.transports import Stalled, Transport
from tests.helpers.jsonrpc import call

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
ENVELOPE_KEYS = (
    "io.modelcontextprotocol/protocolVersion",
    "io.modelcontextprotocol/clientCapabilities",
    "io.modelcontextprotocol/clientInfo",
)


def declares(meta: dict[str, Any], capabilities: dict[str, Any]) -> bool:
    """The envelope declares these capabilities (and maybe more: extensions)."""
    return capabilities.items() <= meta["io.modelcontextprotocol/clientCapabilities"].items()


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
    assert meta.keys() == set(ENVELOPE_KEYS)
    assert meta["io.modelcontextprotocol/protocolVersion"] == MODERN
    assert declares(meta, CLIENT_CAPABILITIES)
    assert meta["io.modelcontextprotocol/clientInfo"] == CLIENT_INFO


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
    sent_meta = sent_call["params"]["_meta"]
    assert sent_meta.keys() == {*meta, *ENVELOPE_KEYS}
    assert {k: sent_meta[k] for k in meta} == meta
    assert sent_meta["io.modelcontextprotocol/protocolVersion"] == MODERN
    assert declares(sent_meta, CLIENT_CAPABILITIES)
    assert sent_meta["io.modelcontextprotocol/clientInfo"] == CLIENT_INFO
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


async def test_a_call_before_any_list_lists_the_tools_for_their_headers() -> None:
    backend = Http(http_backend())
    transport = modern.wrap(backend, {"protocolVersion": MODERN}, CLIENT_INFO, CLIENT_CAPABILITIES)
    await transport.send(call(1, "region", region="Zürich", text="hi"))
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
    await transport.send(call(2, "region", region="eu", text="again"))  # known now: no second list
    assert [m["method"] for m, _ in backend.got] == ["tools/list", "tools/call", "tools/call"]
    assert (backend.got[-1][1] or {})["Mcp-Param-Region"] == "eu"


async def test_a_clients_list_teaches_headers_and_leaves_out_invalid_tools() -> None:
    backend = Http(http_backend())
    transport = modern.wrap(backend, {"protocolVersion": MODERN}, CLIENT_INFO, CLIENT_CAPABILITIES)
    await transport.send({"jsonrpc": "2.0", "id": 5, "method": "tools/list"})
    listed = await asyncio.wait_for(transport.receive(), 5)
    assert [t["name"] for t in (listed or {})["result"]["tools"]] == ["region", "plain"]
    await transport.send(call(6, "region", region="eu", text="x"))
    assert [m["method"] for m, _ in backend.got] == ["tools/list", "tools/call"]  # no own list
    assert (backend.got[-1][1] or {})["Mcp-Param-Region"] == "eu"


async def test_a_header_mismatch_makes_mcpd_list_again() -> None:
    backend = Http(http_backend(mismatch=True))
    transport = modern.wrap(backend, {"protocolVersion": MODERN}, CLIENT_INFO, CLIENT_CAPABILITIES)
    await transport.send(call(1, "region", region="eu", text="x"))
    refused = await asyncio.wait_for(transport.receive(), 5)
    assert (refused or {})["error"]["code"] == -32020  # the client sees the backend's error
    await transport.send(call(2, "region", region="eu", text="x"))
    methods = [m["method"] for m, _ in backend.got]
    assert methods == ["tools/list", "tools/call", "tools/list", "tools/call"]


# -- multi round-trip requests: input_required becomes questions and a retry ------------------

ELICIT = {"method": "elicitation/create", "params": {"message": "Name?", "requestedSchema": {}}}
SAMPLE = {"method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 5}}
NAME = {"action": "accept", "content": {"name": "Ada"}}
PARIS = {"role": "assistant", "content": {"type": "text", "text": "Paris"}, "model": "m"}


def asking(*rounds: dict[str, Any]) -> Answer:
    """Answers tools/call with each of `rounds` (input_required results) in turn, then a
    complete result naming the try's inputResponses and requestState."""
    left = list(rounds)

    def answer(message: Message) -> Message | None:
        if message["method"] != "tools/call":
            return None
        if left:
            return jsonrpc.result(message["id"], {"resultType": "input_required", **left.pop(0)})
        params = message["params"]
        got = {"answers": params.get("inputResponses"), "state": params.get("requestState")}
        return jsonrpc.result(message["id"], {"resultType": "complete", "got": got})

    return answer


def tool_call(request_id: int, token: str | None = None) -> Message:
    return call(request_id, "ask", meta=None if token is None else {"progressToken": token}, x=1)


def modern_transport(server: Transport, capabilities: dict[str, Any] | None = None) -> Any:
    result = {"protocolVersion": MODERN, "capabilities": capabilities or {}}
    transport = modern.wrap(server, result, CLIENT_INFO, CLIENT_CAPABILITIES)
    assert isinstance(transport, modern.ModernTransport)
    return transport


async def next_message(transport: Transport) -> Message:
    message = await asyncio.wait_for(transport.receive(), 5)
    assert message is not None
    return message


async def test_input_required_is_asked_upward_and_retried_with_the_answers() -> None:
    server = Server(
        asking({"inputRequests": {"name": ELICIT, "capital": SAMPLE}, "requestState": "s1"})
    )
    transport = modern_transport(server)
    await transport.send(tool_call(7, token="7"))
    questions = [await next_message(transport), await next_message(transport)]
    assert [q["method"] for q in questions] == ["elicitation/create", "sampling/createMessage"]
    assert questions[0]["params"] == ELICIT["params"]
    ids = [q["id"] for q in questions]
    assert ids[0].startswith("mrtr-") and ids[0].endswith("-name") and len(set(ids)) == 2
    await transport.send(jsonrpc.result(ids[0], NAME))
    assert server.methods == ["tools/call"]  # answers are not sent; the retry waits for both
    await transport.send(jsonrpc.result(ids[1], PARIS))
    first, retry = server.got
    assert retry["id"] not in (7, first["id"])  # a new id for the retry
    assert retry["params"]["inputResponses"] == {"name": NAME, "capital": PARIS}
    assert retry["params"]["requestState"] == "s1"
    assert retry["params"]["arguments"] == {"x": 1}
    assert retry["params"]["_meta"]["progressToken"] == "7"
    assert retry["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == MODERN
    final = await next_message(transport)
    assert final["id"] == 7
    assert final["result"]["got"] == {"answers": {"name": NAME, "capital": PARIS}, "state": "s1"}


async def test_a_retry_the_backend_does_not_take_fails_at_once() -> None:
    """A retry whose write misses the backend's write deadline (it stopped reading) is answered
    with an error at once, not left to the request's deadline."""

    class Deaf(Server):
        async def send(self, message: Message) -> None:
            if "inputResponses" in (message.get("params") or {}):
                raise Stalled("server x: the server has not read its input for 10 s")
            await super().send(message)

    transport = modern_transport(Deaf(asking({"inputRequests": {"name": ELICIT}})))
    await transport.send(tool_call(8))
    question = await next_message(transport)
    await transport.send(jsonrpc.result(question["id"], NAME))
    failed = await next_message(transport)
    assert failed["id"] == 8 and "the retry did not reach the server" in failed["error"]["message"]
    assert "has not read its input" in failed["error"]["message"]


async def test_each_round_asks_again_and_echoes_only_its_own_state() -> None:
    server = Server(
        asking(
            {"inputRequests": {"name": ELICIT}, "requestState": "s1"},
            {"inputRequests": {"capital": SAMPLE}},  # no state: the retry must carry none
        )
    )
    transport = modern_transport(server)
    await transport.send(tool_call(1))
    first = await next_message(transport)
    await transport.send(jsonrpc.result(first["id"], NAME))
    second = await next_message(transport)
    assert second["method"] == "sampling/createMessage" and second["id"] != first["id"]
    await transport.send(jsonrpc.result(second["id"], PARIS))
    final = await next_message(transport)
    assert final["id"] == 1
    assert final["result"]["got"] == {"answers": {"capital": PARIS}, "state": None}
    assert len({m["id"] for m in server.got}) == 3


async def test_an_error_answer_fails_the_request() -> None:
    """A client must answer every question before it retries, and inputResponses carry no
    errors: the request fails with the client's error, and the backend is not asked again."""
    server = Server(asking({"inputRequests": {"name": ELICIT, "capital": SAMPLE}}))
    transport = modern_transport(server)
    await transport.send(tool_call(3))
    asked = [await next_message(transport), await next_message(transport)]
    refusal = jsonrpc.error(asked[0]["id"], jsonrpc.METHOD_NOT_FOUND, "no client is connected")
    await transport.send(refusal)
    failed = await next_message(transport)
    assert failed["id"] == 3 and failed["error"]["code"] == jsonrpc.METHOD_NOT_FOUND
    assert "no client is connected" in failed["error"]["message"]
    await transport.send(jsonrpc.result(asked[1]["id"], PARIS))  # late: dropped
    assert server.methods == ["tools/call"]


async def test_a_round_with_only_request_state_is_retried_at_once() -> None:
    server = Server(asking({"requestState": "a"}, {"requestState": "b"}))
    transport = modern_transport(server)
    await transport.send(tool_call(4))
    final = await next_message(transport)
    assert final["id"] == 4 and final["result"]["got"] == {"answers": None, "state": "b"}
    assert [m["params"].get("requestState") for m in server.got] == [None, "a", "b"]


async def test_rounds_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(modern, "STATE_ONLY_DELAYS", (0.0,))
    server = Server(asking(*[{"requestState": str(n)} for n in range(50)]))
    transport = modern_transport(server)
    await transport.send(tool_call(5))
    failed = await next_message(transport)
    assert failed["id"] == 5 and failed["error"]["code"] == jsonrpc.INTERNAL_ERROR
    assert f"{modern.MAX_ROUNDS} times" in failed["error"]["message"]
    assert len(server.got) == modern.MAX_ROUNDS + 1


@pytest.mark.parametrize(
    "result",
    [{}, {"inputRequests": {"x": "not a request"}}, {"requestState": 7}],
)
async def test_an_invalid_input_required_fails_the_request(result: dict[str, Any]) -> None:
    transport = modern_transport(Server(asking(result)))
    await transport.send(tool_call(6))
    failed = await next_message(transport)
    assert failed["id"] == 6 and "invalid input_required" in failed["error"]["message"]


async def test_a_cancelled_request_stops_its_rounds_and_cancels_the_try_in_flight() -> None:
    answers: list[Message] = []

    def answer(message: Message) -> Message | None:
        if message["method"] == "tools/call" and "inputResponses" not in message["params"]:
            asked = {"inputRequests": {"name": ELICIT}, "requestState": "s"}
            return jsonrpc.result(message["id"], {"resultType": "input_required", **asked})
        answers.append(message)
        return None  # the retry hangs

    server = Server(answer)
    transport = modern_transport(server)
    # cancelled while its question is out: nothing at the backend to cancel
    await transport.send(tool_call(1))
    question = await next_message(transport)
    await transport.send(jsonrpc.notification("notifications/cancelled", {"requestId": 1}))
    await transport.send(jsonrpc.result(question["id"], NAME))  # late: no retry
    assert server.methods == ["tools/call"]
    # cancelled while its retry is in flight: the retry's id is cancelled at the backend
    await transport.send(tool_call(2))
    question = await next_message(transport)
    await transport.send(jsonrpc.result(question["id"], NAME))
    [retry] = answers
    await transport.send(
        jsonrpc.notification("notifications/cancelled", {"requestId": 2, "reason": "gone"})
    )
    assert server.got[-1] == jsonrpc.notification(
        "notifications/cancelled", {"requestId": retry["id"], "reason": "gone"}
    )


async def test_waiting_requests_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(modern, "MAX_WAITING", 1)
    server = Server(asking(*[{"inputRequests": {"name": ELICIT}}] * 2))
    transport = modern_transport(server)
    await transport.send(tool_call(1))
    assert (await next_message(transport))["method"] == "elicitation/create"
    await transport.send(tool_call(2))
    refused = await next_message(transport)
    assert refused["id"] == 2 and "too many" in refused["error"]["message"]


async def test_other_results_and_unknown_answers_pass_as_they_are() -> None:
    server = Server(only_2026())
    transport = modern_transport(server)
    await transport.send(jsonrpc.result("mrtr-9-x", {}))  # for nothing asked: not sent
    await transport.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    assert (await next_message(transport))["id"] == 2
    assert server.methods == ["tools/list"]


# -- subscriptions: one listen of mcpd's own, untagged notifications --------------------------

SUBSCRIBABLE = {
    "tools": {"listChanged": True},
    "prompts": {},
    "resources": {"listChanged": True, "subscribe": True},
}


def listening(message: Message) -> Message | None:
    """A 2026 backend whose listens stay open (acknowledged by the test)."""
    if message["method"] == "subscriptions/listen":
        return None
    return jsonrpc.result(message["id"], {"resultType": "complete"})


def tagged(listen_id: Any, method: str, **params: Any) -> Message:
    meta = {"io.modelcontextprotocol/subscriptionId": listen_id}
    return jsonrpc.notification(method, {**params, "_meta": meta})


def ack(listen: Message) -> Message:
    honored = listen["params"]["notifications"]
    return tagged(listen["id"], "notifications/subscriptions/acknowledged", notifications=honored)


def sent_listens(server: Server) -> list[Message]:
    return [m for m in server.got if m.get("method") == "subscriptions/listen"]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_listen_opens_at_start_and_its_notifications_go_up_untagged() -> None:
    server = Server(listening)
    transport = modern_transport(server, SUBSCRIBABLE)
    reading = asyncio.ensure_future(transport.receive())
    await settle()
    [listen] = sent_listens(server)
    assert listen["params"]["notifications"] == {
        "toolsListChanged": True,
        "resourcesListChanged": True,
    }
    assert listen["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == MODERN
    server.inbox.put_nowait(ack(listen))  # consumed
    server.inbox.put_nowait(tagged(listen["id"], "notifications/tools/list_changed"))
    assert await asyncio.wait_for(reading, 5) == jsonrpc.notification(
        "notifications/tools/list_changed", {}
    )
    other = {"io.modelcontextprotocol/subscriptionId": "not-ours", "x": 1}
    server.inbox.put_nowait(
        jsonrpc.notification("notifications/tools/list_changed", {"_meta": other})
    )
    plain = jsonrpc.notification("notifications/message", {"level": "info", "data": "x"})
    server.inbox.put_nowait(plain)
    assert await next_message(transport) == plain  # the foreign-tagged one was dropped
    await transport.close()


async def test_subscribe_reopens_the_listen_and_is_answered_once_acknowledged() -> None:
    server = Server(listening)
    transport = modern_transport(server, SUBSCRIBABLE)
    transport._start()
    await settle()
    [first] = sent_listens(server)
    server.inbox.put_nowait(ack(first))
    subscribe = {"jsonrpc": "2.0", "id": 3, "method": "resources/subscribe"}
    await transport.send({**subscribe, "params": {"uri": "modern://readme"}})
    await settle()
    second = sent_listens(server)[-1]
    assert second["params"]["notifications"]["resourceSubscriptions"] == ["modern://readme"]
    assert "resources/subscribe" not in server.methods  # answered here
    assert not [m for m in server.got if m.get("method") == "notifications/cancelled"]
    server.inbox.put_nowait(tagged(first["id"], "notifications/tools/list_changed"))
    assert (await next_message(transport))["method"] == "notifications/tools/list_changed"
    server.inbox.put_nowait(ack(second))
    assert await next_message(transport) == jsonrpc.result(3, {})
    await settle()
    cancel = jsonrpc.notification("notifications/cancelled", {"requestId": first["id"]})
    assert cancel in server.got  # the old listen is closed once the new one serves
    server.inbox.put_nowait(tagged(first["id"], "notifications/tools/list_changed"))  # dropped
    update = tagged(second["id"], "notifications/resources/updated", uri="modern://readme")
    server.inbox.put_nowait(update)
    assert await next_message(transport) == jsonrpc.notification(
        "notifications/resources/updated", {"uri": "modern://readme"}
    )
    # subscribed already: at once; unsubscribe: at once, and a listen without it
    await transport.send({**subscribe, "id": 4, "params": {"uri": "modern://readme"}})
    assert await next_message(transport) == jsonrpc.result(4, {})
    unsubscribe = {"jsonrpc": "2.0", "id": 5, "method": "resources/unsubscribe"}
    await transport.send({**unsubscribe, "params": {"uri": "modern://readme"}})
    assert await next_message(transport) == jsonrpc.result(5, {})
    await settle()
    assert "resourceSubscriptions" not in sent_listens(server)[-1]["params"]["notifications"]
    await transport.close()


async def test_a_subscription_the_backend_does_not_honor_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(modern, "LISTEN_TIMEOUT", 0.05)
    server = Server(listening)
    transport = modern_transport(server, {"resources": {"subscribe": True}})
    transport._start()
    await settle()
    assert sent_listens(server) == []  # nothing to listen for yet
    subscribe = {"jsonrpc": "2.0", "method": "resources/subscribe"}
    await transport.send({**subscribe, "id": 1, "params": {"uri": "a://x"}})
    await settle()
    listen = sent_listens(server)[-1]
    declined = tagged(listen["id"], "notifications/subscriptions/acknowledged", notifications={})
    server.inbox.put_nowait(declined)
    refused = await next_message(transport)
    assert refused["id"] == 1 and "does not watch a://x" in refused["error"]["message"]
    await transport.send({**subscribe, "id": 2, "params": {"uri": "a://y"}})  # never acknowledged
    unheard = await next_message(transport)
    assert unheard["id"] == 2 and "did not acknowledge" in unheard["error"]["message"]
    await transport.close()


async def test_without_the_capabilities_nothing_is_listened_to() -> None:
    server = Server(listening)
    transport = modern_transport(server, {"tools": {}})
    transport._start()
    await settle()
    await transport.send(
        {"jsonrpc": "2.0", "id": 1, "method": "resources/subscribe", "params": {"uri": "a://x"}}
    )
    refused = await next_message(transport)
    assert refused["error"]["code"] == jsonrpc.METHOD_NOT_FOUND
    assert server.got == []
    await transport.close()


async def test_a_listen_the_backend_ended_is_opened_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(modern, "LISTEN_RETRY", (0.01, 0.01))
    server = Server(listening)
    transport = modern_transport(server, SUBSCRIBABLE)
    transport._start()
    await settle()
    [listen] = sent_listens(server)
    server.inbox.put_nowait(ack(listen))
    server.inbox.put_nowait(jsonrpc.result(listen["id"], {"resultType": "complete"}))
    for _ in range(100):
        if len(sent_listens(server)) == 2:
            break
        await asyncio.sleep(0.01)
    again = sent_listens(server)[-1]
    assert again["id"] != listen["id"]
    assert again["params"]["notifications"] == listen["params"]["notifications"]
    await transport.close()


async def test_over_http_the_listen_has_its_headers_and_closes_by_cancellation() -> None:
    backend = Http(listening)
    transport = modern_transport(backend, SUBSCRIBABLE)
    transport._start()
    await settle()
    ((listen, headers),) = backend.got
    assert headers == {"mcp-protocol-version": MODERN, "mcp-method": "subscriptions/listen"}
    backend.inbox.put_nowait(ack(listen))
    await transport.send(
        {"jsonrpc": "2.0", "id": 1, "method": "resources/subscribe", "params": {"uri": "a://x"}}
    )
    await settle()
    second = backend.got[-1][0]
    backend.inbox.put_nowait(ack(second))
    assert await next_message(transport) == jsonrpc.result(1, {})
    await settle()
    cancel = jsonrpc.notification("notifications/cancelled", {"requestId": listen["id"]})
    assert (cancel, None) in backend.got  # SdkTransport closes that POST (the SDK does)
    await transport.close()
