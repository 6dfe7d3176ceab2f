"""One tenant cannot stall other tenants' servers on the same host (issue 18, defect 2).

A real host (mcpctl.actors.host.Host, as plain asyncio) runs two real processes of
tests/servers/misbehaving.py through the local orchestrator: `deaf` stops reading its stdin
after the handshake, `quick` does not. A gateway's connection (HostLink) to the host's data
plane over its Unix socket floods `deaf` with 1 MiB `notifications/roots/list_changed`, as a
client may; then everything else on that connection must still go: another tenant's calls
to `quick`, its cancellations (a DELIVER to another backend, and CANCEL), credit (MORE). What
`deaf` cannot take is dropped and counted, and its writes have a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop

from mcpctl.actors.host import Host
from mcpctl.dataplane import frames
from mcpctl.dataplane.client import HostLink
from mcpctl.dataplane.deliveries import MAX_QUEUED
from mcpctl.gateway.app import build_app
from mcpctl.gateway.context import GatewayContext
from mcpctl.gateway.rate_limit import RATE_LIMITED, RateLimitConfig
from mcpctl.mcp import jsonrpc, transports
from mcpctl.mcp.caller import Caller
from mcpctl.mcp.jsonrpc import Message
from mcpctl.store.repositories import repositories
from tests.conftest import ADMIN_TOKEN, fresh_database
from tests.helpers.hosts import LOOPS, running_host
from tests.helpers.jsonrpc import ACCEPT, INIT, call, collect
from tests.helpers.mcpd import bearer
from tests.helpers.waiting import until_async
from tests.helpers.world import MISBEHAVING, lines

ALICE = Caller("s-alice", "alice@example.com", "servers/deaf")
BOB = Caller("s-bob", "bob@example.com", "servers/quick")
FLOOD = MAX_QUEUED + 8  # 1 MiB notifications: more than a queue holds
ROOTS = jsonrpc.notification("notifications/roots/list_changed", {"_meta": {"pad": "r" * 2**20}})
WRITE_TIMEOUT = 1.0  # the test's write deadline (10 s in mcpd)
DEADLINE = 5.0  # "answered rather than hanging"


@dataclass
class World:
    host: Host
    link: HostLink
    state: Path

    async def until_lines(self, name: str, count: int) -> None:
        await until_async(
            lambda: lines(self.state, name),
            lambda seen: len(seen) >= count,
            timeout=DEADLINE,
            interval=0.02,
            what=lambda seen: f"{name}: {seen}",
        )

    async def dropped(self, server: str) -> dict[str, int]:
        return (await self.host.dropped()).get(server, {})


async def echo(world: World, request_id: int) -> float:
    """One call to `quick`, answered within the deadline; the seconds it took."""
    began = time.monotonic()
    stream = world.link.stream("quick", BOB, call(request_id, "echo", text="q"))
    [answer] = await asyncio.wait_for(collect(stream), DEADLINE)
    assert answer["result"]["content"][0]["text"] == "echo: q"
    return time.monotonic() - began


@asynccontextmanager
async def hosted(tmp_path: Path) -> AsyncIterator[World]:
    state = tmp_path / "state"
    state.mkdir()
    servers = {
        name: {"command": sys.executable, "args": [str(MISBEHAVING), str(state), *flags]}
        for name, flags in (("deaf", ["--deaf-after-init"]), ("quick", []))
    }
    database = fresh_database("sqlite", tmp_path)
    async with running_host(database, tmp_path / "data", servers) as (host, link):
        yield World(host, link, state)


@pytest.mark.parametrize("loop", list(LOOPS))
def test_a_backend_that_does_not_read_stalls_nothing_else_on_its_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, loop: str
) -> None:
    monkeypatch.setattr(transports, "WRITE_TIMEOUT", WRITE_TIMEOUT)
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(asyncio.wait_for(stalled_backend(tmp_path), 120))
    # Through the host's shutdown too (the deaf backend killed mid-write): no traceback.
    assert not [r.getMessage() for r in caplog.records if r.exc_info]


async def stalled_backend(tmp_path: Path) -> None:
    async with hosted(tmp_path) as world:
        await served_around_it(world)


async def served_around_it(world: World) -> None:
    quiet = [await echo(world, n) for n in range(1, 6)]

    async def flood() -> None:
        for _ in range(FLOOD):
            await world.link.deliver("deaf", ALICE, ROOTS)

    began = time.monotonic()
    await asyncio.wait_for(flood(), DEADLINE)  # the host reads it all: nothing backs up
    flooded = time.monotonic() - began
    during = [await echo(world, n) for n in range(10, 15)]

    # Another tenant's cancellation, a DELIVER to another backend, goes at once.
    hanging = asyncio.ensure_future(collect(world.link.stream("quick", BOB, call(20, "hang"))))
    await world.until_lines("hanging", 1)
    cancelled = jsonrpc.notification("notifications/cancelled", {"requestId": 20})
    await world.link.deliver("quick", BOB, cancelled)
    [refused] = await asyncio.wait_for(hanging, DEADLINE)
    assert refused["id"] == 20 and refused["error"]["message"] == "cancelled by the client"
    await world.until_lines("cancelled", 1)

    # A stream given up (CANCEL) is cancelled at the backend.
    stream = world.link.stream("quick", BOB, call(21, "hang"))
    opened = asyncio.ensure_future(anext(stream))
    await world.until_lines("hanging", 2)
    opened.cancel()  # the stream's end sends CANCEL
    with contextlib.suppress(asyncio.CancelledError):
        await opened
    await world.until_lines("cancelled", 2)

    # Credit (MORE): a stream of three windows of progress arrives whole.
    count = 3 * frames.WINDOW
    many = call(22, "flood", {"progressToken": "p"}, count=count, pad=10)
    received = await asyncio.wait_for(collect(world.link.stream("quick", BOB, many)), DEADLINE)
    assert len(received) == count + 1
    assert received[-1]["result"]["content"][0]["text"] == "flooded"

    # What `deaf` could not take was dropped and counted, not queued without bound; another
    # caller's queue for it is its own.
    dropped = await world.dropped("deaf")
    assert dropped.get("delivery_queue_full", 0) >= FLOOD - MAX_QUEUED - 1, dropped
    small = jsonrpc.notification("notifications/roots/list_changed")
    await world.link.deliver("deaf", BOB, small)
    await echo(world, 23)  # the host has read the DELIVER before this CALL
    after = await world.dropped("deaf")
    assert after.get("delivery_queue_full") == dropped["delivery_queue_full"]

    # Writes to `deaf` have a deadline: the queue drains into drops, a request fails at once.
    await until_async(
        lambda: world.dropped("deaf"),
        lambda dropped: dropped.get("delivery_stalled"),
        timeout=3 * WRITE_TIMEOUT + DEADLINE,
        interval=0.1,
        what=lambda dropped: dropped,
    )
    stream = world.link.stream("deaf", BOB, call(24, "echo", text="d"))
    [unsent] = await asyncio.wait_for(collect(stream), 2 * WRITE_TIMEOUT + DEADLINE)
    assert "has not read its input" in unsent["error"]["message"], unsent
    assert "tools/call was not sent" in unsent["error"]["message"], unsent

    print(  # the numbers for the report (not asserted: timing depends on the machine)
        f"\nflood of {FLOOD} x 1 MiB sent in {flooded:.3f} s; echo to another server: "
        f"before {max(quiet):.3f} s, during {max(during):.3f} s (max of 5)"
    )


class DataPlaneRuntime:
    """The gateway's runtime as mcpd's, over the data plane to one host (without Ray): the
    messages it delivers are kept, to show what the gateway sent on."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.delivered: list[Message] = []

    async def describe(self, server: str, caller: Caller | None = None) -> Any:
        return await self.world.host.describe(server, caller)

    def exchange(
        self, server: str, caller: Caller, message: Message
    ) -> AsyncGenerator[Message, None]:
        return self.world.link.stream(server, caller, message)

    async def deliver(self, server: str, caller: Caller, message: Message) -> None:
        self.delivered.append(message)
        await self.world.link.deliver(server, caller, message)

    def listen(self, server: str, caller: Caller) -> AsyncGenerator[Message, None]:
        return self.world.link.stream(server, caller, None)

    async def dropped(self) -> dict[str, dict[str, int]]:
        return await self.world.host.dropped()


BURST = 20


async def bounded_notifications(tmp_path: Path) -> None:
    async with hosted(tmp_path) as world:
        runtime = DataPlaneRuntime(world)
        context = GatewayContext(world.host.database, repositories(world.host.secrets.box))
        rates = RateLimitConfig(per_minute=60, burst=BURST)
        app = build_app(context, runtime=runtime, rate_limits=rates)
        headers = {**bearer(ADMIN_TOKEN), **ACCEPT}
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://mcpd", headers=headers) as http,
        ):
            opened = await http.post("/mcp/servers/deaf", json=INIT)
            assert opened.status_code == 200, opened.text
            http.headers["Mcp-Session-Id"] = opened.headers["Mcp-Session-Id"]

            # Over the size bound: refused with a JSON-RPC error, never sent on.
            large = await http.post("/mcp/servers/deaf", json=ROOTS)
            assert large.status_code == 413, large.text
            assert large.json()["error"]["code"] == jsonrpc.INVALID_REQUEST
            assert "the limit is 64 KiB" in large.json()["error"]["message"]
            assert runtime.delivered == []

            # Notifications take a token each, as requests do: a flood gets 429.
            small = jsonrpc.notification("notifications/roots/list_changed")
            statuses = []
            for _ in range(2 * BURST):
                answer = await http.post("/mcp/servers/deaf", json=small)
                statuses.append(answer.status_code)
                if answer.status_code != 202:
                    break
            assert statuses[-1] == 429, answer.text
            assert len(statuses) > BURST - 1  # the burst, less what initialize took
            assert int(answer.headers["Retry-After"]) >= 1
            assert answer.json()["error"]["code"] == RATE_LIMITED
            assert len(runtime.delivered) == statuses.count(202)


def test_the_gateway_bounds_client_notifications(tmp_path: Path) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(bounded_notifications(tmp_path), 120))
