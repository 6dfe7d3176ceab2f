"""Servers that keep per-user state run with `isolation: principal|session`: a backend each,
started on first use, counted as an instance, stopped when idle (tests/servers/misbehaving.py
remembers what it is told, per process)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from tests.e2e.gateway import start_gateway
from tests.helpers.mcpd import add_member, instances
from tests.helpers.processes import exited
from tests.helpers.waiting import until
from tests.helpers.world import MISBEHAVING, World, client, text

IDLE_SECONDS = 2


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("isolation")
    gateway = start_gateway(workdir, "isolation", hosts=1)
    api = httpx.Client(base_url=gateway.url, headers=gateway.headers, timeout=30)
    base = {"command": sys.executable, "args": [str(MISBEHAVING)], "idleSeconds": IDLE_SECONDS}
    for name, extra in (
        ("per-user", {"isolation": "principal"}),
        ("per-session", {"isolation": "session"}),
        ("only-one", {"isolation": "principal", "maxInstances": 1}),
    ):
        body = {"metadata": {"name": name}, "spec": {**base, **extra}}
        assert api.post("/api/v1/servers", json=body).is_success
    tokens = {"admin": gateway.token}
    for user in ("alice", "bob"):
        tokens[user] = add_member(api, user)
    project = {
        "metadata": {"name": "shared"},
        "spec": {
            "servers": ["per-user", "per-session", "only-one"],
            "members": ["alice@example.com", "bob@example.com"],
        },
    }
    assert api.post("/api/v1/projects", json=project).is_success
    yield World(gateway, workdir, tokens)
    api.close()
    gateway.stop()


async def test_each_principal_gets_a_backend_of_its_own_until_it_is_idle(world: World) -> None:
    assert instances(world.gateway, "per-user") == []  # nothing runs before first use
    async with client(world, "/mcp/projects/shared", "alice") as alice:
        await alice.call_tool("per-user__remember", {"text": "alice-secret"})
        alice_pid = text(await alice.call_tool("per-user__pid", {}))
        async with client(world, "/mcp/projects/shared", "bob") as bob:
            assert text(await bob.call_tool("per-user__recall", {})) == ""
            bob_pid = text(await bob.call_tool("per-user__pid", {}))
        async with client(world, "/mcp/projects/shared", "alice") as again:
            assert text(await again.call_tool("per-user__recall", {})) == "alice-secret"
    assert alice_pid != bob_pid
    running = until(
        lambda: instances(world.gateway, "per-user"),
        lambda items: len(items) == 2,
        interval=0.1,
        what=lambda items: items,
    )
    assert {str(i["pid"]) for i in running} == {alice_pid, bob_pid}
    # Nobody uses them: after idleSeconds both stop and their processes are gone.
    until(
        lambda: instances(world.gateway, "per-user"),
        lambda items: all(i["status"] == "STOPPED" for i in items),
        interval=0.1,
        what=lambda items: items,
    )
    assert exited(int(alice_pid)) and exited(int(bob_pid))
    async with client(world, "/mcp/projects/shared", "alice") as alice:
        assert text(await alice.call_tool("per-user__recall", {})) == ""  # a fresh one


async def test_each_session_gets_a_backend_of_its_own(world: World) -> None:
    async with (
        client(world, "/mcp/projects/shared", "alice") as first,
        client(world, "/mcp/projects/shared", "alice") as second,
    ):
        await first.call_tool("per-session__remember", {"text": "first"})
        assert text(await second.call_tool("per-session__recall", {})) == ""
        assert text(await first.call_tool("per-session__recall", {})) == "first"
        pids = {text(await c.call_tool("per-session__pid", {})) for c in (first, second)}
    assert len(pids) == 2


async def test_2026_requests_share_their_principals_backend_of_a_per_session_server(
    world: World,
) -> None:
    """2026-07-28 requests have no session, so a per-session server serves them per principal:
    one backend for all of alice's requests, not a new one (and a lost memory) per request."""
    async with client(world, "/mcp/projects/shared", "alice", mode="2026-07-28") as alice:
        await alice.call_tool("per-session__remember", {"text": "kept"})
        assert text(await alice.call_tool("per-session__recall", {})) == "kept"


async def test_isolated_backends_are_capped_with_a_clear_error(world: World) -> None:
    async with client(world, "/mcp/projects/shared", "alice") as alice:
        assert text(await alice.call_tool("only-one__echo", {"text": "a"})) == "echo: a"
        async with client(world, "/mcp/projects/shared", "bob") as bob:
            with pytest.raises(MCPError, match="runs its limit of 1 isolated instances"):
                await bob.call_tool("only-one__echo", {"text": "b"})


def test_isolation_is_validated() -> None:
    from mcpctl.models.kinds import SERVER

    with pytest.raises(ValueError, match="isolation"):
        SERVER.parse({"metadata": {"name": "x"}, "spec": {"command": "x", "isolation": "team"}})
