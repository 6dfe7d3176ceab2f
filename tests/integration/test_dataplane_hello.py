"""A connection to a host's data plane costs almost nothing until it shows the cluster token
(issue 18, defect 4): the host's StreamServer on real sockets (TCP, as gateways on other
nodes reach it, and its Unix socket), with hellos that are too large, garbage, of the wrong
type, not ASCII, wrong, or missing. Each is closed quietly and counted; connections beyond
the greeting cap are closed at once; a gateway with the token is still served.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from mcpctl.dataplane import frames, server
from mcpctl.dataplane.server import StreamServer
from mcpctl.mcp import jsonrpc
from mcpctl.mcp.caller import Caller
from mcpctl.mcp.jsonrpc import Message
from tests.helpers.hosts import link_to
from tests.helpers.jsonrpc import collect, request
from tests.helpers.processes import rss_mib
from tests.helpers.sockets import Connection, closed_by_host, send

TOKEN = frames.token_for(b"the cluster key")
CALLER = Caller("s", "alice@example.com", "servers/echo")
HELLO_TIMEOUT = 1.0  # the test's (3 s in mcpd)
BIG = 48 * 1024 * 1024  # what a hostile hello announces, and starts to send


class EchoBackend:
    async def deliver(self, server: str, caller: Caller, message: Message) -> None:
        pass

    async def exchange(
        self, server: str, caller: Caller, message: Message
    ) -> AsyncGenerator[Message, None]:
        yield jsonrpc.result(message["id"], {"echo": message["params"]})

    async def listen(self, server: str, caller: Caller) -> AsyncGenerator[Message, None]:
        return
        yield


def hellos() -> dict[str, bytes]:
    """What a connection sends first, by the reason the host should give for closing it."""
    return {
        "too large": frames.HEADER.pack(BIG) + b"\0" * 65536,
        "garbage": frames.HEADER.pack(9) + b"not json!",
        "not a list": frames.HEADER.pack(2) + b"{}",
        "wrong kind": frames.encode(frames.CALL, TOKEN),
        "wrong type": frames.encode(frames.HELLO, 12345),
        "not ascii": frames.encode(frames.HELLO, "é" * 64),
        "wrong token": frames.encode(frames.HELLO, "0" * 64),
    }


async def echo(address: dict[str, Any], local: bool) -> bool:
    """A gateway with the token is served (over the Unix socket, or TCP)."""

    link = link_to(address, TOKEN, "host", local=local)
    try:
        answers = await collect(link.stream("echo", CALLER, request(1, "ping", {"n": 1})))
    finally:
        await link.close()
    return answers == [jsonrpc.result(1, {"echo": {"n": 1}})]


async def hostile(address: tuple[str, int]) -> Connection:
    """A connection that announces a 48 MiB hello and sends it, as fast as it is taken."""
    return await send(address, frames.HEADER.pack(BIG), BIG)


async def test_malformed_hellos_are_closed_quietly_counted_and_capped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(server, "HELLO_TIMEOUT", HELLO_TIMEOUT)
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: unhandled.append(context))
    host = StreamServer(EchoBackend(), TOKEN, tcp_host="127.0.0.1")
    address = await host.start()
    tcp = (address["tcp"][0], address["tcp"][1])
    try:
        with caplog.at_level(logging.INFO):
            # Each hostile hello is closed at once, long before the hello deadline.
            for what, data in hellos().items():
                assert await closed_by_host(await send(tcp, data), HELLO_TIMEOUT / 2), what

            # Eight connections announcing 48 MiB each, and sending it: nothing is buffered.
            before = rss_mib()
            hostiles = await asyncio.gather(*(hostile(tcp) for _ in range(8)))
            for connection in hostiles:
                assert await closed_by_host(connection, HELLO_TIMEOUT / 2)
            grown = rss_mib() - before

            # Silent connections fill the greeting cap; one more is closed at once, even with
            # the token; the Unix socket has a cap of its own, and a gateway is served there.
            silent = [await send(tcp, b"") for _ in range(server.MAX_GREETING)]
            await asyncio.sleep(0.1)
            began = time.monotonic()
            extra = await send(tcp, frames.encode(frames.HELLO, TOKEN))
            assert await closed_by_host(extra, HELLO_TIMEOUT / 2)
            assert time.monotonic() - began < HELLO_TIMEOUT / 2
            assert await echo(address, local=True)
            # The silent ones are closed when their deadline passes; then TCP serves again.
            for connection in silent:
                assert await closed_by_host(connection, 2 * HELLO_TIMEOUT)
            assert await echo(address, local=False)
    finally:
        await host.close()
        loop.set_exception_handler(previous)

    assert host.refused == {
        "hello_malformed": 6 + 8,
        "wrong_token": 1,
        "hello_timeout": server.MAX_GREETING,
        "too_many_unauthenticated": 1,
    }, host.refused
    assert grown < 16, f"the host grew {grown:.0f} MiB"
    assert unhandled == []  # no "Unhandled exception in client_connected_cb"
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    refusals = [r for r in caplog.records if "refused a data-plane connection" in r.getMessage()]
    assert len(refusals) == 1  # a line a minute at most, whatever the number
    print(f"\nRSS grew {grown:.1f} MiB over 8 hellos announcing 48 MiB; refused: {host.refused}")
