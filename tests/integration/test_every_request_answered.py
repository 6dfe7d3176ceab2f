"""Every request in flight gets a JSON-RPC answer that says what happened, whatever fails
on its way: never an exception that ends its stream with nothing, never a bare HTTP error.

The window that once broke it: a backend process that ended while its output has not, so
mcpd can no longer write to it and nothing has told the replica yet (its stdout is still
open, the supervisor has not seen the exit). On uvloop, which Ray's host actors run on,
writing to the closed pipe raised RuntimeError out of the multiplexer; the host ended the
request's stream with nothing, and the gateway answered HTTP 500 (the SDK's "Server returned
an error response"). That is shown on real processes (tests/servers/misbehaving.py, `vanish`:
it exits without answering and leaves a child holding its stdout, which holds the window
open) through the local orchestrator, on both event loops; the test does what the replica
does around the multiplexer. Behind it, the host's data plane and the gateway each answer a
request whose serving failed or ended without a response.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from cryptography.fernet import Fernet
from mcp_types.jsonrpc import JSONRPCError, jsonrpc_message_adapter
from starlette.testclient import TestClient

from mcpctl.controllers.workload import Workload, render
from mcpctl.dataplane.server import StreamServer
from mcpctl.gateway.app import build_app
from mcpctl.gateway.context import GatewayContext
from mcpctl.mcp import jsonrpc
from mcpctl.mcp.caller import Caller
from mcpctl.mcp.handshake import handshake
from mcpctl.mcp.jsonrpc import Message
from mcpctl.mcp.multiplexer import Multiplexer
from mcpctl.mcp.transports import StdioTransport
from mcpctl.models.server import ServerSpec
from mcpctl.orchestrators.base import Handle
from mcpctl.orchestrators.local import LocalOrchestrator
from mcpctl.orchestrators.processes import wait_for_exit
from mcpctl.store.repositories import repositories
from mcpctl.store.secretbox import SecretBox
from tests.conftest import ADMIN_TOKEN, fresh_database
from tests.helpers.hosts import LOOPS, link_to, save
from tests.helpers.jsonrpc import ACCEPT, INIT, call, collect, request
from tests.helpers.mcpd import bearer
from tests.helpers.world import MISBEHAVING

ALICE = Caller("s-alice", "alice@example.com", "servers/misbehaving")
BOB = Caller("s-bob", "bob@example.com", "servers/misbehaving")


async def answer(stream: AsyncGenerator[Message, None]) -> Message:
    return (await collect(stream))[-1]


async def start(orchestrator: LocalOrchestrator, workload: Workload) -> tuple[Handle, Any]:
    handle = await orchestrator.start(workload)
    transport = StdioTransport(await orchestrator.open_stdio(handle, workload))
    await handshake(transport, 30)
    return handle, transport


async def ended(orchestrator: LocalOrchestrator, handle: Handle) -> None:
    """Until the backend's process has ended and the event loop has seen it end."""
    if isinstance(asyncio.get_running_loop(), uvloop.Loop):
        await orchestrator.wait(handle)  # uvloop saw the exit, and closed the process's stdin
    else:  # asyncio's wait() waits for the pipes too (Python 3.11); the child holds one
        assert handle.pid is not None
        await wait_for_exit(handle.pid)


async def requests_in_the_window(state: Path, data: Path) -> None:
    orchestrator = LocalOrchestrator(data)
    spec = ServerSpec.model_validate(
        {"command": sys.executable, "args": [str(MISBEHAVING), str(state)]}
    )
    workload = render("misbehaving", 0, spec, {})
    mux = Multiplexer("misbehaving-0", attach_timeout=30, request_timeout=30)
    handle, transport = await start(orchestrator, workload)
    await mux.attach(transport)
    handles = [handle]
    try:
        vanishing = asyncio.ensure_future(answer(mux.exchange(ALICE, call(1, "vanish"))))
        await ended(orchestrator, handle)  # the process is gone, its stdout is not
        assert mux.attached  # nothing has said so to the multiplexer: the window

        appending = asyncio.ensure_future(answer(mux.exchange(BOB, call(2, "append", text="b"))))
        lost = asyncio.ensure_future(mux.lost.wait())
        done, _ = await asyncio.wait(
            {lost, appending}, timeout=10, return_when=asyncio.FIRST_COMPLETED
        )
        # The write that failed tells the replica the backend is gone; the request waits.
        assert done == {lost}, appending
        assert not mux.attached

        await mux.detach()  # what the replica does then (it watches `lost`)
        await transport.close()
        await orchestrator.stop(handle)  # with the child that held its stdout
        failed = await vanishing
        assert failed["id"] == 1
        assert "restarted while tools/call was in flight" in failed["error"]["message"]
        assert "may or may not have run" in failed["error"]["message"]
        assert not appending.done()

        handle, transport = await start(orchestrator, workload)
        handles.append(handle)
        await mux.attach(transport)
        appended = await appending  # sent to the next backend, and run there once
        assert appended["id"] == 2
        assert appended["result"]["content"][0]["text"] == "appended 1"
        assert (state / "appended").read_text() == "b\n"
    finally:
        await mux.close("the test ended")
        await transport.close()
        for started in handles:
            await orchestrator.stop(started)


@pytest.mark.parametrize("loop", list(LOOPS))
def test_a_request_sent_to_a_backend_that_ended_waits_for_the_next_one(
    tmp_path: Path, loop: str
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(asyncio.wait_for(requests_in_the_window(state, tmp_path / "data"), 60))


async def nothing() -> AsyncGenerator[Message, None]:
    return
    yield


class FailingHost:
    """The host's side of the data plane, failing to serve a request before its response
    (as the window above did)."""

    async def exchange(
        self, server: str, caller: Caller, message: Message
    ) -> AsyncGenerator[Message, None]:
        yield jsonrpc.notification("notifications/message", {"level": "info", "data": "working"})
        raise RuntimeError("unable to perform operation on a closed pipe")

    async def deliver(self, server: str, caller: Caller, message: Message) -> None:
        pass

    def listen(self, server: str, caller: Caller) -> AsyncGenerator[Message, None]:
        return nothing()


async def test_the_data_plane_answers_a_request_whose_serving_failed(tmp_path: Path) -> None:
    host = StreamServer(FailingHost(), "token")
    link = link_to(await host.start(), "token")
    try:
        items = [item async for item in link.stream("failing", ALICE, call(7, "append"))]
    finally:
        await link.close()
        await host.close()
    working, failed = items
    assert working["method"] == "notifications/message"
    assert failed["id"] == 7
    assert failed["error"]["message"] == (
        "server failing: mcpd failed while serving tools/call (RuntimeError: unable to "
        "perform operation on a closed pipe); it may or may not have run"
    )


class SilentRuntime:
    """The gateway's runtime in front of a host that ends every request's stream with
    nothing (a host of an older mcpd, or a fault not foreseen)."""

    async def describe(self, server: str, caller: Caller | None = None) -> dict[str, Any]:
        info = {"name": server, "version": "1"}
        return {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": info}

    def exchange(
        self, server: str, caller: Caller, message: Message
    ) -> AsyncGenerator[Message, None]:
        return nothing()

    async def deliver(self, server: str, caller: Caller, message: Message) -> None:
        pass


def test_the_gateway_answers_a_request_its_backend_left_unanswered(tmp_path: Path) -> None:
    database = fresh_database("sqlite", tmp_path)
    save(database, "silent", {"command": sys.executable, "args": [str(MISBEHAVING)]})
    context = GatewayContext(database, repositories(SecretBox(Fernet.generate_key())))
    headers = {**bearer(ADMIN_TOKEN), **ACCEPT}  # as the SDK sends it
    app = build_app(context, runtime=SilentRuntime())
    try:
        with TestClient(app, headers=headers) as client:
            opened = client.post("/mcp/servers/silent", json=INIT)
            assert opened.status_code == 200, opened.text
            session = {"Mcp-Session-Id": opened.headers["Mcp-Session-Id"]}
            listing = request(1, "tools/list", {})
            answers = [
                client.post("/mcp/servers/silent", json=message, headers=session)
                for message in (call(2, "append"), listing)
            ]
    finally:
        database.dispose()

    assert [a.status_code for a in answers] == [200, 200]  # not a bare 500: the SDK reads it
    called, listed = (jsonrpc_message_adapter.validate_json(a.content) for a in answers)
    assert isinstance(called, JSONRPCError) and isinstance(listed, JSONRPCError)
    assert called.error.message == (
        "tools/call ended without an answer from servers/silent; it may or may not have run"
    )
    assert listed.error.message == "tools/list ended without an answer from servers/silent"
