"""The tasks extension through mcpd, against tests/servers/tasks.py (a 2026-07-28-only STDIO
server whose long calls become tasks): a client that takes tasks gets a handle only its
principal can poll, update or cancel, through any replica; clients that take none (every
2025-era client, and 2026 clients without the extension) get the final result, mcpd polling
for them within the request deadline, and a task past it is cancelled at the server."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError

from mcpctl.gateway.limits import Limits
from tests.e2e.gateway import start_gateway
from tests.helpers.jsonrpc import MODERN, envelope, modern_headers, request
from tests.helpers.mcpd import add_member, bearer, sdk_client, wait_running
from tests.helpers.waiting import until
from tests.helpers.world import World

SCRIPT = Path(__file__).parents[1] / "servers" / "tasks.py"
TASKS = {"extensions": {"io.modelcontextprotocol/tasks": {}}}
DEADLINE = 3.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("tasks")
    state = workdir / "state"
    state.mkdir()
    gateway = start_gateway(workdir, "tasks", hosts=1, limits=Limits(request_timeout=DEADLINE))
    api = httpx.Client(base_url=gateway.url, headers=gateway.headers, timeout=30)
    spec = {"command": sys.executable, "args": [str(SCRIPT), str(state)]}
    assert api.post("/api/v1/servers", json={"metadata": {"name": "tasks"}, "spec": spec})
    tokens = {"admin": gateway.token}
    for user in ("alice", "bob"):
        tokens[user] = add_member(api, user)
    members = ["alice@example.com", "bob@example.com"]
    project = {"metadata": {"name": "team"}, "spec": {"servers": ["tasks"], "members": members}}
    assert api.post("/api/v1/projects", json=project).is_success
    wait_running(gateway, "tasks")
    yield World(gateway, state, tokens)
    api.close()
    gateway.stop()


def rpc(world: World, user: str, method: str, params: dict[str, Any], name: str) -> Any:
    body = request(1, method, {**params, "_meta": envelope(TASKS, client=None)})
    headers = {**bearer(world.tokens[user]), **modern_headers(method, name)}
    answer = httpx.post(
        f"{world.gateway.url}/mcp/projects/team", json=body, headers=headers, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def build(world: World, user: str, text: str, ticks: int = 2) -> dict[str, Any]:
    arguments = {"text": text, "ticks": ticks}
    return rpc(
        world, user, "tools/call", {"name": "tasks__build", "arguments": arguments}, "tasks__build"
    )


def task_request(world: World, user: str, method: str, task_id: str) -> Any:
    return rpc(world, user, method, {"taskId": task_id}, task_id)


def test_a_task_handle_is_its_principals_alone(world: World) -> None:
    created = build(world, "alice", "mine")["result"]
    assert created["resultType"] == "task" and created["status"] == "working"
    task_id = created["taskId"]
    assert task_id.startswith("mcpd-task.")  # sealed: names the server, binds alice
    assert world.lines("builds").count("mine") == 1
    for intruder in (
        task_request(world, "bob", "tasks/get", task_id),
        task_request(world, "bob", "tasks/cancel", task_id),
        task_request(world, "alice", "tasks/get", task_id[:-4] + "AAAA"),
    ):
        assert intruder["error"]["code"] == -32602
        assert "unknown task" in intruder["error"]["message"]

    def poll() -> dict[str, Any]:
        polled = task_request(world, "alice", "tasks/get", task_id)["result"]
        if polled["status"] != "completed":
            assert polled["taskId"] == task_id and polled["status"] == "working"
        return dict(polled)

    polled = until(poll, lambda polled: polled["status"] == "completed")
    assert polled["result"]["content"][0]["text"] == "built: mine"
    assert world.lines("cancels") == []  # bob's cancel never reached the server
    # ... and his tries are in the audit trail as denied (written in batches: wait for them)
    audit = f"{world.gateway.url}/api/v1/audit"
    query = {"user": "bob@example.com", "outcome": "denied"}
    assert world.until(
        lambda: (
            len(httpx.get(audit, params=query, headers=world.gateway.headers).json()["items"]) >= 2
        )
    )


def test_a_task_is_cancelled_by_its_principal(world: World) -> None:
    task_id = build(world, "alice", "cancel me", ticks=1000)["result"]["taskId"]
    assert task_request(world, "alice", "tasks/cancel", task_id)["result"] == {
        "resultType": "complete"
    }
    assert task_request(world, "alice", "tasks/get", task_id)["result"]["status"] == "cancelled"
    assert len(world.lines("cancels")) == 1


@asynccontextmanager
async def sdk(world: World, mode: str) -> AsyncIterator[Client]:
    url = f"{world.gateway.url}/mcp/projects/team"
    async with sdk_client(url, world.tokens["alice"], mode) as client:
        yield client


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_clients_that_take_no_tasks_get_the_result(world: World, mode: str) -> None:
    async with sdk(world, mode) as client:
        built = await client.call_tool("tasks__build", {"text": f"for {mode}"})
        assert built.content[0].text == f"built: for {mode}"
        # A task that outlives the request deadline is cancelled at the server.
        cancels = len(world.lines("cancels"))
        with pytest.raises(MCPError, match="within"):
            await client.call_tool("tasks__build", {"text": "forever", "ticks": 100000})
        until(lambda: len(world.lines("cancels")) > cancels, what="the task was not cancelled")
