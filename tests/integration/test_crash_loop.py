"""A server that crashes soon after its handshake, on real processes (plain asyncio, no Ray):
it backs off 0.5 s doubling, shows ERROR with the reason after 5 fast crashes and keeps it
until a life stays RUNNING for 10 s, while another server on the same host keeps answering.

The crashing server is tests/servers/misbehaving.py with `--crash-after-init` (it exits with
code 3, 0.3 s after the handshake), started the way users start servers (`command` + `args`).
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mcpctl.mcp.caller import Caller
from mcpctl.models.instance import EventKind, Instance, InstanceEvent, InstanceStatus
from mcpctl.store.repositories.events import events_between
from tests.helpers.hosts import save
from tests.helpers.jsonrpc import call
from tests.helpers.world import MISBEHAVING
from tests.integration import test_actors
from tests.integration.test_actors import EPOCH, ObservedHost

host = test_actors.host  # the fixture: a host with the local orchestrator on SQLite

DELAYS = [0.5, 1.0, 2.0, 4.0]  # the back-off after crashes 1..4
ERROR, RUNNING = InstanceStatus.ERROR, InstanceStatus.RUNNING


def misbehaving(state: Path, *flags: str) -> dict[str, Any]:
    state.mkdir(exist_ok=True)
    return {"command": sys.executable, "args": [str(MISBEHAVING), str(state), *flags]}


def events(host: ObservedHost, server: str) -> list[InstanceEvent]:
    with host.test_database.transaction() as session:  # type: ignore[attr-defined]
        return events_between(session, EPOCH, datetime.now(UTC), server)


def of(kind: EventKind, found: list[InstanceEvent]) -> list[InstanceEvent]:
    return [e for e in found if e.kind is kind]


def reports(host: ObservedHost, server: str, since: int = 0) -> list[Instance]:
    return [i for i in host.history[since:] if i.server == server]


async def echo(host: ObservedHost, server: str, n: int) -> str:
    caller = Caller("steady-client", "admin@example.com", f"servers/{server}")
    message = call(n, "echo", text=str(n))
    items = [item async for item in host.exchange(server, caller, message)]
    return str(items[-1]["result"]["content"][0]["text"])


async def keep_calling(
    host: ObservedHost, server: str, answered: list[datetime], stop: asyncio.Event
) -> None:
    """tools/call on `server` every 0.1 s until `stop`; each must answer within 10 s."""
    n = 0
    while not stop.is_set():
        n += 1
        assert await asyncio.wait_for(echo(host, server, n), 10) == f"echo: {n}"
        answered.append(datetime.now(UTC))
        await asyncio.sleep(0.1)  # pacing the load, not waiting for anything


async def test_a_crash_loop_backs_off_shows_error_and_spares_other_servers(
    host: ObservedHost, tmp_path: Path
) -> None:
    db = host.test_database  # type: ignore[attr-defined]
    await host.ensure("steady", save(db, "steady", misbehaving(tmp_path / "steady")))
    await host.reported("steady", 0, RUNNING)
    answered: list[datetime] = []
    stop = asyncio.Event()
    calling = asyncio.ensure_future(keep_calling(host, "steady", answered, stop))

    looping = misbehaving(tmp_path / "looping", "--crash-after-init")
    await host.ensure("looping", save(db, "looping", looping))
    error = await host.reported("looping", 0, ERROR, timeout=120)
    stop.set()
    await calling

    assert error.restart_count == 5
    assert error.last_error is not None
    assert error.last_error.startswith("crash loop: exited with code 3 (5 restarts in ")
    assert error.last_error.endswith("; next start in 8 s")
    before = reports(host, "looping")[: reports(host, "looping").index(error)]
    assert {i.status for i in before} == {InstanceStatus.STARTING, RUNNING}  # no ERROR before

    found = events(host, "looping")
    assert [e.kind for e in found] == ["started", "ready", "crashed"] * 5
    crashed, started = of(EventKind.CRASHED, found), of(EventKind.STARTED, found)
    assert all(e.reason == "exited with code 3" for e in crashed)
    gaps = [(started[i + 1].at - crashed[i].at).total_seconds() for i in range(4)]
    for gap, delay in zip(gaps, DELAYS, strict=True):
        assert delay <= gap < delay + 5, gaps
    # The other server answered all along, during the longer back-offs too.
    assert answered
    for i in (2, 3):
        assert any(crashed[i].at < at < started[i + 1].at for at in answered), i

    # A new spec does not wait out the back-off: it starts at once, afresh.
    mark = host.mark()
    await host.ensure("looping", save(db, "looping", misbehaving(tmp_path / "looping")))
    healed = await host.reported("looping", 0, RUNNING, since=mark, timeout=60)
    assert healed.last_error is None
    restarted = of(EventKind.STARTED, events(host, "looping"))[5]
    assert (restarted.at - crashed[4].at).total_seconds() < 8
    assert await echo(host, "looping", 1) == "echo: 1"
    assert host.supervisors["looping"].replicas[0].backoff.failures == 0


async def test_a_crash_loop_shows_error_until_a_life_stays_running_for_10_s(
    host: ObservedHost, tmp_path: Path
) -> None:
    db = host.test_database  # type: ignore[attr-defined]
    state = tmp_path / "flaky"
    state.mkdir()
    crash = state / "crash"
    crash.touch()
    # It crashes after its handshake as long as the file `crash` exists.
    script = (
        f"echo starting >&2; if [ -e {shlex.quote(str(crash))} ]; "
        f"then exec {shlex.quote(sys.executable)} {shlex.quote(str(MISBEHAVING))} --crash-after-init; "
        f"else exec {shlex.quote(sys.executable)} {shlex.quote(str(MISBEHAVING))}; fi"
    )
    await host.ensure("flaky", save(db, "flaky", {"command": "sh", "args": ["-c", script]}))
    error = await host.reported("flaky", 0, ERROR, timeout=120)
    assert error.last_error is not None
    assert error.last_error.startswith("crash loop: exited with code 3: starting (5 restarts in ")
    mark = host.mark()
    crash.unlink()  # the next life stays up

    running = await host.reported("flaky", 0, RUNNING, since=mark, timeout=60)
    observed = datetime.now(UTC)
    ready = of(EventKind.READY, events(host, "flaky"))[-1]
    assert observed - ready.at >= timedelta(seconds=9.9)  # RUNNING only once up for 10 s
    assert running.last_error is None and running.restart_count == 5
    meanwhile = reports(host, "flaky", mark)
    meanwhile = meanwhile[: meanwhile.index(running)]
    assert meanwhile and {i.status for i in meanwhile} == {ERROR}
    assert any(i.pid == running.pid for i in meanwhile)  # up and serving, still shown ERROR
    assert all(i.last_error == error.last_error for i in meanwhile)
    assert host.supervisors["flaky"].replicas[0].backoff.failures == 0
    assert await echo(host, "flaky", 7) == "echo: 7"
