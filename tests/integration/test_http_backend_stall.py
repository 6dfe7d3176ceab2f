"""A server reached by URL that stops answering holds a bounded part of its host, for a bounded
time, and stalls nothing else there (issue 18, defect 2, on the HTTP side).

A real host (mcpctl.actors.host.Host, as plain asyncio) serves two Streamable HTTP servers by
`url` (tests/servers/stalling_http.py, in this process: `slow`, which stops reading and
answering after the handshake, and `fine`) and a STDIO one (tests/servers/misbehaving.py,
`quick`). A gateway's connection to the host's data plane floods `slow` with requests and
notifications from many client sessions. What `slow`'s transport holds stays within its
bounds (messages queued, requests posted), every flooded request is answered with an error
within the write deadline plus the request deadline, what could not be sent is dropped and
counted, and calls to `fine` and `quick` are served meanwhile as before.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mcpctl.actors.host import Host
from mcpctl.dataplane.client import HostLink
from mcpctl.mcp import http_transports, jsonrpc, transports
from mcpctl.mcp.caller import Caller
from mcpctl.mcp.http_transports import SdkTransport
from mcpctl.mcp.jsonrpc import Message
from tests.conftest import fresh_database
from tests.helpers.hosts import LOOPS, running_host
from tests.helpers.jsonrpc import call, collect
from tests.helpers.processes import rss_mib
from tests.helpers.world import MISBEHAVING
from tests.servers.stalling_http import StallingHttpServer

WRITE_TIMEOUT = 1.0  # the test's write deadline (10 s in mcpd)
REQUEST_TIMEOUT = 4.0  # the test's request deadline (MCPD_REQUEST_TIMEOUT, 300 s in mcpd)
DEADLINE = 5.0  # "answered rather than hanging"
CALLERS = [Caller(f"s-{n}", f"user{n}@example.com", "servers/slow") for n in range(100)]
PER_CALLER = 10  # notifications each: 1,000 in all, about 60 MB
ROOTS = jsonrpc.notification("notifications/roots/list_changed", {"_meta": {"pad": "r" * 60_000}})
REQUESTS = 3 * http_transports.MAX_POSTS  # more than may be posted at once


@dataclass
class World:
    host: Host
    link: HostLink
    slow: StallingHttpServer

    def transport(self, server: str) -> SdkTransport:
        transport = self.host.supervisors[server].replicas[0].multiplexer._transport
        assert isinstance(transport, SdkTransport), transport
        return transport


async def echo(world: World, server: str, request_id: int) -> float:
    """One call to `server`, answered within the deadline; the seconds it took."""
    caller = Caller("s-bob", "bob@example.com", f"servers/{server}")
    began = time.monotonic()
    stream = world.link.stream(server, caller, call(request_id, "echo", text="e"))
    [answer] = await asyncio.wait_for(collect(stream), DEADLINE)
    assert answer["result"]["content"][0]["text"] == "echo: e", answer
    return time.monotonic() - began


@asynccontextmanager
async def hosted(tmp_path: Path) -> AsyncIterator[World]:
    async with StallingHttpServer("slow") as slow, StallingHttpServer("fine") as fine:
        state = tmp_path / "state"
        state.mkdir()
        servers = {
            "slow": {"url": slow.url, "transport": "streamable-http"},
            "fine": {"url": fine.url, "transport": "streamable-http"},
            "quick": {"command": sys.executable, "args": [str(MISBEHAVING), str(state)]},
        }
        database = fresh_database("sqlite", tmp_path)
        hosted = running_host(database, tmp_path / "data", servers, request_timeout=REQUEST_TIMEOUT)
        async with hosted as (host, link):
            yield World(host, link, slow)


@pytest.mark.parametrize("loop", list(LOOPS))
def test_a_url_server_that_stops_answering_holds_a_bounded_part_of_its_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, loop: str
) -> None:
    monkeypatch.setattr(transports, "WRITE_TIMEOUT", WRITE_TIMEOUT)
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(asyncio.wait_for(stalled_url_server(tmp_path), 180))
    assert not [r.getMessage() for r in caplog.records if r.exc_info]


async def stalled_url_server(tmp_path: Path) -> None:
    async with hosted(tmp_path) as world:
        await served_around_it(world)


@dataclass
class Meanwhile:
    """Calls to the other servers while `slow` is flooded, and the most its transport held."""

    seconds: list[float] = field(default_factory=list)
    queued: int = 0
    posted: int = 0


async def meanwhile(world: World, done: Callable[[], Awaitable[bool]], seconds: float) -> Meanwhile:
    """Until `done`: call the other servers, and check what `slow`'s transport holds."""
    seen, transport = Meanwhile(), world.transport("slow")
    deadline = time.monotonic() + seconds
    while not await done():
        for server in ("fine", "quick"):
            seen.seconds.append(await echo(world, server, 1000 + len(seen.seconds)))
        seen.queued = max(seen.queued, transport.queued)
        seen.posted = max(seen.posted, transport.posted)
        assert seen.queued <= http_transports.MAX_QUEUED, seen
        assert seen.posted <= http_transports.MAX_POSTS, seen
        assert world.slow.held <= http_transports.MAX_POSTS + 2, world.slow.held  # GET, a POST
        assert time.monotonic() < deadline, seen
    return seen


async def served_around_it(world: World) -> None:
    quiet = [await echo(world, server, n) for n in range(5) for server in ("fine", "quick")]
    rss_before = rss_mib()
    world.slow.stall()

    # A flood of requests: as many are posted as may be, the others wait for the deadline.
    async def ask(request_id: int) -> tuple[Message, float]:
        caller = CALLERS[request_id % len(CALLERS)]
        began = time.monotonic()
        stream = world.link.stream("slow", caller, call(request_id, "echo", text="s"))
        answers = await collect(stream)
        return answers[-1], time.monotonic() - began

    asked = [asyncio.ensure_future(ask(100 + n)) for n in range(REQUESTS)]

    async def answered() -> bool:
        return all(task.done() for task in asked)

    during = await meanwhile(world, answered, 2 * WRITE_TIMEOUT + REQUEST_TIMEOUT + DEADLINE)
    posted, held = during.posted, world.slow.held

    # Every one got an error: not sent (no room) or no answer in time (cancelled).
    answers = [task.result() for task in asked]
    errors = [a.get("error", {}).get("message", "") for a, _ in answers]
    unsent = [e for e in errors if e.endswith("; tools/call was not sent")]
    timed_out = [e for e in errors if "got no answer from server slow-0 within" in e]
    assert len(unsent) + len(timed_out) == REQUESTS, errors[:3]
    assert unsent and unsent[0].startswith("server slow-0: the server has"), unsent[0]
    assert len(timed_out) <= http_transports.MAX_POSTS
    slowest = max(seconds for _, seconds in answers)

    # A flood of notifications: what it could not take is dropped and counted, each within the
    # deadline (it holds the cancellations of the requests that timed out).
    began = time.monotonic()
    for caller in CALLERS:
        for _ in range(PER_CALLER):
            await world.link.deliver("slow", caller, ROOTS)
    flooded = time.monotonic() - began
    notifications = len(CALLERS) * PER_CALLER
    dropped: dict[str, int] = {}

    async def drained() -> bool:
        dropped.update((await world.host.dropped()).get("slow", {}))
        return sum(dropped.values()) >= notifications - http_transports.MAX_QUEUED

    notified = await meanwhile(world, drained, PER_CALLER * WRITE_TIMEOUT + DEADLINE)
    assert set(dropped) <= {"delivery_stalled", "delivery_queue_full"}, dropped
    rss_after = rss_mib()

    others = during.seconds + notified.seconds
    print(  # the numbers for the report (not asserted: timing depends on the machine)
        f"\n{REQUESTS} requests to a stalled URL server: at most {posted} posted, {held} "
        f"connections held; {len(unsent)} not sent, {len(timed_out)} timed out, the slowest "
        f"answered in {slowest:.1f} s. {notifications} x 60 KB notifications sent in "
        f"{flooded:.3f} s: at most {notified.queued} messages queued; dropped {dropped}. "
        f"RSS {rss_before:.0f} -> {rss_after:.0f} MiB. Echo to other servers: before "
        f"{max(quiet):.3f} s, during {max(others):.3f} s (max of {len(others)})"
    )
