"""Supervisors and replicas as plain asyncio (no Ray), on real processes of a real MCP server
(`mcp-server-time` from PyPI, run by uvx) through the local orchestrator."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from mcpctl.actors.host import Host, HostConfig
from mcpctl.mcp.caller import Caller
from mcpctl.models.instance import Instance, InstanceStatus
from mcpctl.models.kinds import SECRET
from mcpctl.store.repositories.events import events_between
from mcpctl.store.repositories.instances import list_instances
from mcpctl.store.repositories.secrets import SecretRepository
from mcpctl.store.secretbox import SecretBox
from tests.conftest import fresh_database
from tests.helpers.hosts import save
from tests.helpers.jsonrpc import call, collect
from tests.helpers.processes import exited

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TIME = {"command": "uvx", "args": ["mcp-server-time", "--local-timezone", "UTC"]}


class ObservedHost(Host):
    """A host whose status reports can be awaited."""

    def __init__(self, config: HostConfig) -> None:
        super().__init__(config)
        self.history: list[Instance] = []
        self.changed = asyncio.Condition()

    async def _report(self, instance: Instance) -> None:
        await super()._report(instance)
        async with self.changed:
            self.history.append(instance)
            self.changed.notify_all()

    def mark(self) -> int:
        return len(self.history)

    async def reported(
        self, server: str, replica: int, status: InstanceStatus, since: int = 0, timeout: float = 60
    ) -> Instance:
        """The first report of `status` for that replica after history position `since`."""

        def found() -> Instance | None:
            return next(
                (
                    i
                    for i in self.history[since:]
                    if (i.server, i.replica, i.status) == (server, replica, status)
                ),
                None,
            )

        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(found), timeout)
        result = found()
        assert result is not None
        return result


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[ObservedHost]:
    database = fresh_database("sqlite", tmp_path)
    key = Fernet.generate_key()
    host = ObservedHost(
        HostConfig(0, database.url, key, str(tmp_path / "data"), startup_timeout=60)
    )
    host.test_database = database  # type: ignore[attr-defined]
    yield host
    await host.shutdown()
    database.dispose()


async def call_time(host: Host, server: str, client: str, request_id: Any) -> list[dict[str, Any]]:
    message = call(request_id, "get_current_time", timezone="UTC")
    caller = Caller(client, "admin@example.com", f"servers/{server}")
    return [item async for item in host.exchange(server, caller, message)]


async def test_replicas_start_and_many_clients_share_one_backend(host: ObservedHost) -> None:
    spec = save(host.test_database, "time", {**TIME, "replicas": 2})  # type: ignore[attr-defined]
    await host.ensure("time", spec)
    for replica in (0, 1):
        await host.reported("time", replica, InstanceStatus.RUNNING)
    info = await host.describe("time")
    assert info is not None and info["serverInfo"]["name"] == "mcp-time"
    answers = await asyncio.gather(
        *(call_time(host, "time", f"client-{i % 5}", f"req-{i}") for i in range(50))
    )
    for i, items in enumerate(answers):
        assert items[-1]["id"] == f"req-{i}"
        assert '"timezone": "UTC"' in items[-1]["result"]["content"][0]["text"]
    pids = {r.instance.pid for r in host.supervisors["time"].replicas.values()}
    assert len(pids) == 2
    with host.test_database.transaction() as session:  # type: ignore[attr-defined]
        rows = list_instances(session, "time")
    assert [(r.replica, r.status) for r in rows] == [(0, "RUNNING"), (1, "RUNNING")]


async def test_a_killed_process_is_replaced_and_clients_continue(host: ObservedHost) -> None:
    await host.ensure("time", save(host.test_database, "time", TIME))  # type: ignore[attr-defined]
    running = await host.reported("time", 0, InstanceStatus.RUNNING)
    assert running.pid is not None
    mark = host.mark()
    os.killpg(running.pid, signal.SIGKILL)
    restarting = await host.reported("time", 0, InstanceStatus.STARTING, since=mark)
    assert restarting.restart_count == 1
    assert "exited with code" in (restarting.last_error or "")
    again = await host.reported("time", 0, InstanceStatus.RUNNING, since=mark)
    assert again.pid != running.pid
    items = await call_time(host, "time", "c", 1)
    assert "result" in items[-1]
    with host.test_database.transaction() as session:  # type: ignore[attr-defined]
        kinds = [e.kind for e in events_between(session, EPOCH, datetime.now(UTC), "time")]
    assert kinds == ["started", "ready", "crashed", "started", "ready"]


async def test_in_flight_requests_after_a_backend_crash(host: ObservedHost) -> None:
    """Read-only requests in flight are answered by the replacement; a tool call in flight
    is never sent again: it was answered before the kill, or it says it may have run."""
    await host.ensure("time", save(host.test_database, "time", TIME))  # type: ignore[attr-defined]
    running = await host.reported("time", 0, InstanceStatus.RUNNING)
    assert running.pid is not None
    caller = Caller("c", "admin@example.com", "servers/time")
    listing = {"jsonrpc": "2.0", "method": "tools/list", "params": {}}
    lists = [
        asyncio.ensure_future(_answer(host.exchange("time", caller, {**listing, "id": i})))
        for i in range(10)
    ]
    calls = [asyncio.ensure_future(call_time(host, "time", f"c{i}", i)) for i in range(10)]
    os.killpg(running.pid, signal.SIGKILL)
    listed = await asyncio.wait_for(asyncio.gather(*lists), 90)
    assert all(answer["result"]["tools"] for answer in listed)
    answers = [a[-1] for a in await asyncio.wait_for(asyncio.gather(*calls), 90)]
    assert [a["id"] for a in answers] == list(range(10))
    for answer in answers:
        assert "result" in answer or "may or may not have run" in answer["error"]["message"]


async def _answer(stream: Any) -> dict[str, Any]:
    return (await collect(stream))[-1]


async def test_scale_and_roll_without_restarting_mcpd(host: ObservedHost) -> None:
    db = host.test_database  # type: ignore[attr-defined]
    await host.ensure("time", save(db, "time", TIME))
    first = await host.reported("time", 0, InstanceStatus.RUNNING)
    await host.ensure("time", save(db, "time", {**TIME, "replicas": 3}))
    await host.reported("time", 2, InstanceStatus.RUNNING)
    await host.ensure("time", save(db, "time", {**TIME, "replicas": 1}))
    assert sorted(host.supervisors["time"].replicas) == [0]
    with db.transaction() as session:
        assert [r.replica for r in list_instances(session, "time")] == [0]
    assert host.supervisors["time"].replicas[0].instance.pid == first.pid
    rolled = {**TIME, "args": ["mcp-server-time", "--local-timezone", "Europe/Paris"]}
    mark = host.mark()
    await host.ensure("time", save(db, "time", rolled))
    after = await host.reported("time", 0, InstanceStatus.RUNNING, since=mark)
    assert after.pid != first.pid
    await host.remove("time")
    assert after.pid is not None and exited(after.pid)


async def test_broken_servers_show_error_and_do_not_disturb_others(host: ObservedHost) -> None:
    db = host.test_database  # type: ignore[attr-defined]
    await host.ensure("missing", save(db, "missing", {"command": "no-such-binary-here"}))
    await host.ensure(
        "crashes", save(db, "crashes", {"command": "sh", "args": ["-c", "echo boom >&2; exit 3"]})
    )
    await host.ensure("time", save(db, "time", TIME))
    missing = await host.reported("missing", 0, InstanceStatus.ERROR)
    assert missing.last_error == "command not found: no-such-binary-here"
    crashed = await host.reported("crashes", 0, InstanceStatus.ERROR)
    assert crashed.last_error == "exited with code 3: boom"
    await host.reported("time", 0, InstanceStatus.RUNNING)
    # Errors are retried with back-off: the broken one reports ERROR again, and each failed
    # start counts as a restart (RESTARTS stayed 0 while the crash loop said "5 restarts").
    mark = host.mark()
    again = await host.reported("crashes", 0, InstanceStatus.ERROR, since=mark, timeout=10)
    assert crashed.restart_count >= 1 and again.restart_count > crashed.restart_count


async def test_secrets_reach_the_process_and_a_missing_one_is_named(host: ObservedHost) -> None:
    db = host.test_database  # type: ignore[attr-defined]
    env = [{"name": "TOKEN", "secretRef": {"name": "creds", "key": "token"}}]
    printer = {"command": "sh", "args": ["-c", "echo token=$TOKEN >&2; exit 1"], "env": env}
    await host.ensure("printer", save(db, "printer", printer))
    missing = await host.reported("printer", 0, InstanceStatus.ERROR)
    assert missing.last_error == "env TOKEN: secret 'creds' not found"
    secret = SECRET.parse({"metadata": {"name": "creds"}, "spec": {"data": {"token": "abc123"}}})
    with db.transaction() as session:
        SecretRepository(SecretBox(host.config.secret_key)).put(session, secret, "system@mcpctl.io")
    mark = host.mark()
    found = await host.reported("printer", 0, InstanceStatus.ERROR, since=mark, timeout=30)
    while found.last_error == missing.last_error:
        mark = host.mark()
        found = await host.reported("printer", 0, InstanceStatus.ERROR, since=mark, timeout=30)
    assert found.last_error == "exited with code 1: token=abc123"


async def test_leftover_processes_are_stopped_on_the_next_start(
    host: ObservedHost, tmp_path: Path
) -> None:
    db = host.test_database  # type: ignore[attr-defined]
    await host.ensure("time", save(db, "time", TIME))
    running = await host.reported("time", 0, InstanceStatus.RUNNING)
    assert running.pid is not None
    # A second host on the same data dir (mcpd started again after a crash) finds the pid file.
    successor = Host(HostConfig(1, db.url, host.config.secret_key, host.config.data_dir))
    assert await successor.orchestrator.adopt("time") == []  # a STDIO process cannot be adopted
    assert exited(running.pid)
    await host.reported("time", 0, InstanceStatus.RUNNING, since=host.mark())  # replaced
    leftover = host.supervisors["time"].replicas[0].instance.pid
    assert await successor.orchestrator.stop_orphans(known_servers=set()) == 1
    assert leftover is not None and exited(leftover)
