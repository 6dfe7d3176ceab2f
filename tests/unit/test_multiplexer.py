"""The multiplexer's routing rules on an in-memory transport (the real server is in
tests/e2e/test_tenancy.py): whose a backend's message is, and what happens on a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from mcpctl.mcp import jsonrpc
from mcpctl.mcp.caller import Caller
from mcpctl.mcp.jsonrpc import Message
from mcpctl.mcp.multiplexer import Multiplexer
from mcpctl.mcp.transports import Stalled, Transport
from tests.helpers.jsonrpc import collect, request
from tests.helpers.waiting import until_async

ALICE = Caller("s-alice", "alice@example.com", "projects/a")
ALICE_2 = Caller("s-alice-2", "alice@example.com", "projects/a")
BOB = Caller("s-bob", "bob@example.com", "projects/b")


class Wire(Transport):
    """What the multiplexer sends is recorded; the test plays the server."""

    def __init__(self) -> None:
        self.sent: asyncio.Queue[Message] = asyncio.Queue()
        self.inbox: asyncio.Queue[Message | None] = asyncio.Queue()

    async def send(self, message: Message) -> None:
        self.sent.put_nowait(message)

    async def receive(self) -> Message | None:
        return await self.inbox.get()

    async def close(self) -> None:
        self.inbox.put_nowait(None)

    async def next_sent(self) -> Message:
        return await asyncio.wait_for(self.sent.get(), 5)


async def start(mux: Multiplexer, caller: Caller, message: Message) -> tuple[Any, Any]:
    """Begin an exchange; return its generator and the task collecting what it yields."""
    stream = mux.exchange(caller, message)
    items: list[Message] = []

    async def keep(gen: AsyncGenerator[Message, None]) -> list[Message]:
        async for item in gen:
            items.append(item)
        return items

    return stream, asyncio.ensure_future(keep(stream))


@pytest.fixture
async def wired() -> tuple[Multiplexer, Wire]:
    mux = Multiplexer("srv", attach_timeout=1, request_timeout=5)
    wire = Wire()
    await mux.attach(wire)
    return mux, wire


async def test_an_unattributed_question_goes_to_the_only_tenant_in_flight(
    wired: tuple[Multiplexer, Wire],
) -> None:
    mux, wire = wired
    _, alice = await start(mux, ALICE, request(1, "tools/call", {}))
    _, alice_again = await start(
        mux, ALICE_2, request(1, "tools/call", {})
    )  # same principal, other session
    first = await wire.next_sent()
    await wire.next_sent()
    wire.inbox.put_nowait(request("q", "sampling/createMessage", {}))
    wire.inbox.put_nowait(jsonrpc.result(first["id"], {"ok": 1}))
    answered = await alice
    assert answered[0]["method"] == "sampling/createMessage"
    assert answered[0]["id"].startswith("mcpd-")
    assert answered[-1] == jsonrpc.result(1, {"ok": 1})
    alice_again.cancel()


async def test_two_tenants_in_flight_make_a_question_nobodys(
    wired: tuple[Multiplexer, Wire],
) -> None:
    mux, wire = wired
    _, alice = await start(mux, ALICE, request(1, "tools/call", {}))
    _, bob = await start(mux, BOB, request(1, "tools/call", {}))
    await wire.next_sent()
    await wire.next_sent()
    wire.inbox.put_nowait(request("q", "sampling/createMessage", {}))
    refusal = await wire.next_sent()
    assert refusal["id"] == "q" and "cannot tell which client" in refusal["error"]["message"]
    wire.inbox.put_nowait(jsonrpc.notification("notifications/message", {"data": "private"}))
    wire.inbox.put_nowait(jsonrpc.notification("notifications/tools/list_changed"))
    # the reader routes in its own task
    await until_async(lambda: mux.dropped["notification_ambiguous"], interval=0)
    assert mux.dropped == {"request_ambiguous": 1, "notification_ambiguous": 1}
    assert not alice.done() and not bob.done()
    alice.cancel()
    bob.cancel()


async def test_an_answer_from_another_session_is_dropped(wired: tuple[Multiplexer, Wire]) -> None:
    mux, wire = wired
    stream = mux.exchange(ALICE, request(1, "tools/call", {}))
    first = asyncio.ensure_future(anext(stream))
    await wire.next_sent()
    wire.inbox.put_nowait(request("q", "roots/list", {}))
    question = await asyncio.wait_for(first, 5)
    forged = jsonrpc.result(question["id"], {"roots": [{"uri": "file:///bob"}]})
    await mux.deliver(BOB, forged)
    assert mux.dropped["foreign_answer"] == 1
    await mux.deliver(ALICE, jsonrpc.result(question["id"], {"roots": []}))
    assert await wire.next_sent() == jsonrpc.result("q", {"roots": []})
    await stream.aclose()


async def test_after_a_restart_only_read_only_requests_are_sent_again(
    wired: tuple[Multiplexer, Wire],
) -> None:
    mux, wire = wired
    _, call = await start(mux, ALICE, request(1, "tools/call", {"name": "pay"}))
    _, listing = await start(mux, BOB, request(2, "tools/list", {}))
    await wire.next_sent()
    await wire.next_sent()
    await mux.detach()
    [failed] = await call
    assert "may or may not have run" in failed["error"]["message"]
    replacement = Wire()
    await mux.attach(replacement)
    resent = await replacement.next_sent()
    assert resent["method"] == "tools/list"
    replacement.inbox.put_nowait(jsonrpc.result(resent["id"], {"tools": []}))
    assert (await listing)[-1] == jsonrpc.result(2, {"tools": []})
    assert replacement.sent.empty()  # the tool call was not sent again


class SlowWire(Wire):
    """A backend whose sends finish only when the test says (a pipe it reads slowly)."""

    def __init__(self) -> None:
        super().__init__()
        self.sending = asyncio.Event()
        self.flushed = asyncio.Event()

    async def send(self, message: Message) -> None:
        self.sending.set()
        await self.flushed.wait()
        await super().send(message)


async def test_a_call_written_as_its_backend_went_is_not_sent_to_the_next() -> None:
    mux = Multiplexer("srv", attach_timeout=1, request_timeout=5)
    wire = SlowWire()
    await mux.attach(wire)
    _, call = await start(mux, ALICE, request(1, "tools/call", {"name": "pay"}))
    await wire.sending.wait()
    await mux.detach()  # the backend went while the call was being written to it...
    wire.flushed.set()  # ...and the write went through: it may have run there
    [failed] = await call
    assert "may or may not have run" in failed["error"]["message"]
    replacement = Wire()
    await mux.attach(replacement)
    assert replacement.sent.empty()  # never a second execution
    assert mux.in_flight == 0


async def test_a_backend_that_cannot_be_written_to_is_lost(
    wired: tuple[Multiplexer, Wire],
) -> None:
    mux, wire = wired

    async def broken(message: Message) -> None:
        raise ConnectionResetError("the server's stdin is closed")

    wire.send = broken  # type: ignore[method-assign]
    _, call = await start(mux, ALICE, request(1, "tools/call", {"name": "pay"}))
    await asyncio.wait_for(mux.lost.wait(), 5)  # what the replica watches: it replaces it
    assert not mux.attached and not call.done()
    await mux.detach()
    replacement = Wire()
    await mux.attach(replacement)
    sent = await replacement.next_sent()  # it never reached the first: the next one runs it
    replacement.inbox.put_nowait(jsonrpc.result(sent["id"], {"paid": True}))
    assert (await call)[-1] == jsonrpc.result(1, {"paid": True})


async def test_a_backend_that_does_not_read_fails_what_was_not_written_and_stays(
    wired: tuple[Multiplexer, Wire],
) -> None:
    mux, wire = wired

    async def stalled(message: Message) -> None:
        raise Stalled("the server has not read its input for 10 s")

    wire.send = stalled  # type: ignore[method-assign]
    [failed] = await asyncio.wait_for(collect(mux.exchange(ALICE, request(1, "tools/call", {}))), 5)
    assert failed["error"]["message"] == (
        "server srv: the server has not read its input for 10 s; tools/call was not sent"
    )
    wire.inbox.put_nowait({"jsonrpc": "2.0", "id": "p", "method": "ping"})  # its answer: stuck
    await until_async(lambda: mux.dropped["backend_stalled"], interval=0)  # the reader goes on
    with pytest.raises(Stalled):  # a client's notification: the host counts it
        await mux.deliver(ALICE, jsonrpc.notification("notifications/roots/list_changed"))
    assert mux.attached and not mux.lost.is_set()  # not replaced: it may read again
    assert mux.in_flight == 0


async def test_a_client_message_for_a_backend_that_went_is_dropped_and_counted(
    wired: tuple[Multiplexer, Wire],
) -> None:
    mux, wire = wired

    async def broken(message: Message) -> None:
        raise ConnectionResetError("the server's stdin is closed")

    wire.send = broken  # type: ignore[method-assign]
    await mux.deliver(ALICE, jsonrpc.notification("notifications/roots/list_changed"))
    assert mux.dropped == {"client_message_backend_gone": 1}
    assert mux.lost.is_set()


async def test_a_cancelled_request_ends_at_once_and_the_backend_is_told(
    wired: tuple[Multiplexer, Wire],
) -> None:
    mux, wire = wired
    _, call = await start(mux, ALICE, request(7, "tools/call", {}))
    sent = await wire.next_sent()
    await mux.deliver(BOB, jsonrpc.notification("notifications/cancelled", {"requestId": 7}))
    assert not call.done()  # bob cannot cancel alice's request
    await mux.deliver(ALICE, jsonrpc.notification("notifications/cancelled", {"requestId": 7}))
    cancel = await wire.next_sent()
    assert cancel["params"]["requestId"] == sent["id"]
    [answer] = await call
    assert answer["error"]["code"] == jsonrpc.REQUEST_CANCELLED
    assert mux.in_flight == 0


async def test_a_request_past_its_deadline_is_answered_and_cancelled() -> None:
    mux = Multiplexer("srv", attach_timeout=1, request_timeout=0.2)
    wire = Wire()
    await mux.attach(wire)
    _, call = await start(mux, ALICE, request(3, "tools/call", {}))
    sent = await wire.next_sent()
    [answer] = await call
    assert "got no answer from server srv within 0.2 s" in answer["error"]["message"]
    cancel = await wire.next_sent()
    assert cancel["method"] == "notifications/cancelled"
    assert cancel["params"]["requestId"] == sent["id"]


async def test_a_flood_for_a_slow_client_is_bounded(wired: tuple[Multiplexer, Wire]) -> None:
    mux, wire = wired
    _, call = await start(
        mux, ALICE, {**request(1, "tools/call", {}), "params": {"_meta": {"progressToken": 1}}}
    )
    sent = await wire.next_sent()
    token = sent["params"]["_meta"]["progressToken"]
    for n in range(1500):
        progress = {"progressToken": token, "progress": n}
        wire.inbox.put_nowait(jsonrpc.notification("notifications/progress", progress))
    wire.inbox.put_nowait(jsonrpc.result(sent["id"], {}))
    items = await call
    assert len(items) == 1001  # 1,000 queued notifications and the answer
    assert mux.dropped["queue_full"] == 500


# -- log levels: the backend has one, each client its own ---------------------------------

MODERN = Caller("single-m", "carol@example.com", "projects/c")  # a 2026-07-28 request


def log(level: str) -> Message:
    return jsonrpc.notification("notifications/message", {"level": level, "data": level})


async def test_each_2025_session_gets_log_lines_at_its_own_level(
    wired: tuple[Multiplexer, Wire],
) -> None:
    mux, wire = wired
    set_error = request(1, "logging/setLevel", {"level": "error"})
    assert [m async for m in mux.exchange(ALICE, set_error)] == [jsonrpc.result(1, {})]
    assert (await wire.next_sent())["params"] == {"level": "error"}  # the backend follows
    set_debug = request(2, "logging/setLevel", {"level": "debug"})
    assert [m async for m in mux.exchange(BOB, set_debug)] == [jsonrpc.result(2, {})]
    assert (await wire.next_sent())["params"] == {"level": "debug"}  # the most verbose wins
    _, alice = await start(mux, ALICE, request(3, "tools/call", {}))
    sent = await wire.next_sent()
    for level in ("info", "error"):
        wire.inbox.put_nowait(log(level))
    wire.inbox.put_nowait(jsonrpc.result(sent["id"], {}))
    lines = [m["params"]["level"] for m in await alice if m.get("method")]
    assert lines == ["error"]  # bob's debug did not make alice see info
    assert mux.dropped["log_below_level"] == 1
    bad = [m async for m in mux.exchange(ALICE, request(4, "logging/setLevel", {"level": "loud"}))]
    assert (
        bad[0]["error"]["code"] == jsonrpc.INVALID_PARAMS and "level" in bad[0]["error"]["message"]
    )


async def test_a_2026_request_gets_log_lines_only_when_it_asks_and_at_its_level(
    wired: tuple[Multiplexer, Wire],
) -> None:
    mux, wire = wired
    _, quiet = await start(mux, MODERN, request(1, "tools/call", {}))
    sent = await wire.next_sent()
    wire.inbox.put_nowait(log("emergency"))
    wire.inbox.put_nowait(jsonrpc.result(sent["id"], {}))
    assert [m for m in await quiet if m.get("method")] == []  # no logLevel, no log lines
    asking = request(2, "tools/call", {"_meta": {"io.modelcontextprotocol/logLevel": "warning"}})
    _, loud = await start(mux, MODERN, asking)
    assert (await wire.next_sent())["params"] == {"level": "warning"}
    sent = await wire.next_sent()
    for level in ("info", "warning", "alert"):
        wire.inbox.put_nowait(log(level))
    wire.inbox.put_nowait(jsonrpc.result(sent["id"], {}))
    assert [m["params"]["level"] for m in await loud if m.get("method")] == ["warning", "alert"]
    refused = [
        m async for m in mux.exchange(MODERN, request(3, "logging/setLevel", {"level": "debug"}))
    ]
    assert refused[0]["error"]["code"] == jsonrpc.METHOD_NOT_FOUND
    assert wire.sent.empty()  # nothing of that reached the backend


# -- lists shared by the backend's clients ------------------------------------------------


async def test_a_burst_of_lists_costs_the_backend_one_until_it_changes(
    wired: tuple[Multiplexer, Wire],
) -> None:
    mux, wire = wired
    _, alice = await start(mux, ALICE, request("a", "tools/list", {}))
    _, bob = await start(mux, BOB, request("b", "tools/list", {}))  # while alice's is in flight
    sent = await wire.next_sent()
    tools = {"tools": [{"name": "t"}]}
    wire.inbox.put_nowait(jsonrpc.result(sent["id"], tools))
    assert await alice == [jsonrpc.result("a", tools)]
    assert await bob == [jsonrpc.result("b", tools)]
    assert [m async for m in mux.exchange(MODERN, request("c", "tools/list", {}))] == [
        jsonrpc.result("c", tools)
    ]
    assert wire.sent.empty()  # one backend tools/list for three clients
    assert mux.lists.counts == {"miss": 1, "shared": 1, "hit": 1}
    wire.inbox.put_nowait(jsonrpc.notification("notifications/tools/list_changed"))
    await asyncio.sleep(0)  # the reader routes it
    await until_async(lambda: mux.lists.fresh(("tools/list", "")) is None, interval=0.01)
    _, again = await start(mux, ALICE, request("d", "tools/list", {}))
    sent = await wire.next_sent()  # asked again after the change
    wire.inbox.put_nowait(jsonrpc.result(sent["id"], {"tools": []}))
    assert await again == [jsonrpc.result("d", {"tools": []})]


async def test_a_list_the_backend_says_not_to_keep_is_asked_each_time(
    wired: tuple[Multiplexer, Wire],
) -> None:
    mux, wire = wired
    for request_id in ("a", "b"):
        _, listed = await start(mux, ALICE, request(request_id, "prompts/list", {}))
        sent = await wire.next_sent()
        wire.inbox.put_nowait(jsonrpc.result(sent["id"], {"prompts": [], "ttlMs": 0}))
        assert (await listed)[0]["id"] == request_id


async def test_a_question_the_transport_attributes_goes_to_that_request(
    wired: tuple[Multiplexer, Wire],
) -> None:
    mux, wire = wired
    _, alice = await start(mux, ALICE, request(1, "tools/call", {}))
    _, bob = await start(
        mux, BOB, request(2, "tools/call", {})
    )  # two tenants in flight: ambiguous otherwise
    await wire.next_sent()
    bobs = await wire.next_sent()
    question = {**request("q", "elicitation/create", {}), jsonrpc.RELATED_REQUEST_KEY: bobs["id"]}
    wire.inbox.put_nowait(question)
    wire.inbox.put_nowait(jsonrpc.result(bobs["id"], {}))
    asked = (await bob)[0]
    assert asked["method"] == "elicitation/create" and jsonrpc.RELATED_REQUEST_KEY not in asked
    assert not alice.done()
