"""The shared data path under hostile tenants and a faulty server (issue: data-plane safety).

One misbehaving STDIO server (tests/servers/misbehaving.py, started as users start servers)
is shared by two members in two projects and an admin. Each test shows one guarantee:
nothing crosses principals, nothing runs twice, nothing waits forever, bounds hold, and the
error a client gets says what happened.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import CreateMessageResult, TextContent

from mcpctl.gateway.limits import Limits
from tests.e2e.gateway import start_gateway
from tests.helpers.jsonrpc import INIT, call
from tests.helpers.mcpd import add_member, wait_running
from tests.helpers.world import MISBEHAVING, SERVER, World, client, raw_session, text

TIMEOUT = 4.0  # the module's MCPD_REQUEST_TIMEOUT
LIMITS = Limits(request_timeout=TIMEOUT, max_body_bytes=256 * 1024, max_sessions_per_principal=4)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("tenancy")
    state = workdir / "state"
    state.mkdir()
    gateway = start_gateway(workdir, "tenancy", hosts=1, limits=LIMITS)
    api = httpx.Client(base_url=gateway.url, headers=gateway.headers, timeout=30)
    spec = {"command": sys.executable, "args": [str(MISBEHAVING), str(state)]}
    assert api.post("/api/v1/servers", json={"metadata": {"name": SERVER}, "spec": spec}).is_success
    tokens = {"admin": gateway.token}
    for user, project in (("alice", "p1"), ("bob", "p2"), ("carol", "p3")):
        tokens[user] = add_member(api, user)
        email = f"{user}@example.com"
        body = {"metadata": {"name": project}, "spec": {"servers": [SERVER], "members": [email]}}
        assert api.post("/api/v1/projects", json=body).is_success
    wait_running(gateway, SERVER)
    yield World(gateway, state, tokens)
    api.close()
    gateway.stop()


def sampler(answers: list[str], asked: list[str], reply: str) -> Any:
    async def sample(context: Any, params: Any) -> CreateMessageResult:
        asked.append(params.messages[0].content.text)
        answers.append(reply)
        return CreateMessageResult(
            role="assistant", content=TextContent(type="text", text=reply), model="test"
        )

    return sample


async def pid(world: World) -> str:
    async with client(world, f"/mcp/servers/{SERVER}", "admin") as admin:
        return text(await admin.call_tool("pid", {}))


# -- isolation between clients of one backend ------------------------------------------


async def test_a_server_question_reaches_only_the_tenant_whose_request_is_in_flight(
    world: World,
) -> None:
    alice_asked: list[str] = []
    bob_asked: list[str] = []
    hanging = len(world.lines("hanging"))
    async with (
        client(
            world, "/mcp/projects/p1", "alice", sampling_callback=sampler([], alice_asked, "A")
        ) as alice,
        client(
            world, "/mcp/projects/p2", "bob", sampling_callback=sampler([], bob_asked, "forged")
        ) as bob,
    ):
        alone = await alice.call_tool(f"{SERVER}__sample", {"text": "alice-private-1"})
        assert text(alone) == "sampled: A"
        # Bob now has a request in flight on the same backend: the server's question names
        # no request, so it cannot be given to anyone; it is refused, and bob never sees it.
        stuck = asyncio.ensure_future(bob.call_tool(f"{SERVER}__hang", {}))
        await asyncio.to_thread(world.until_lines, "hanging", hanging + 1)
        refused = await alice.call_tool(f"{SERVER}__sample", {"text": "alice-private-2"})
        assert text(refused).startswith("sampling refused: mcpd cannot tell which client")
        with pytest.raises(MCPError, match="no answer within 4 s"):
            await stuck  # the deadline ends bob's hanging call
    assert alice_asked == ["alice-private-1"]
    assert bob_asked == []
    assert world.metric("mcpctl_backend_messages_dropped", reason="request_ambiguous") >= 1


async def test_another_tenant_cannot_answer_a_question_that_is_not_its_own(world: World) -> None:
    asked = asyncio.Event()
    release = asyncio.Event()

    async def slow_sample(context: Any, params: Any) -> CreateMessageResult:
        asked.set()
        await release.wait()
        return CreateMessageResult(
            role="assistant", content=TextContent(type="text", text="alice's"), model="test"
        )

    async with (
        client(world, "/mcp/projects/p1", "alice", sampling_callback=slow_sample) as alice,
        raw_session(world, "/mcp/projects/p2", "bob") as bob,
    ):
        sampled = asyncio.ensure_future(alice.call_tool(f"{SERVER}__sample", {"text": "q"}))
        await asyncio.wait_for(asked.wait(), 30)
        forged = {"role": "assistant", "content": {"type": "text", "text": "forged"}, "model": "x"}
        for first in range(0, 300, 100):  # every id the gateway could have given the question
            batch = [
                {"jsonrpc": "2.0", "id": f"mcpd-{n}", "result": forged}
                for n in range(first, first + 100)
            ]
            assert (await bob.post("/mcp/projects/p2", json=batch)).status_code == 202
        release.set()
        assert text(await sampled) == "sampled: alice's"


async def test_log_lines_reach_only_their_tenant_or_nobody(world: World) -> None:
    alice_logs: list[str] = []
    bob_logs: list[str] = []

    async def alice_log(params: Any) -> None:
        alice_logs.append(params.data)

    async def bob_log(params: Any) -> None:
        bob_logs.append(params.data)

    hanging = len(world.lines("hanging"))
    dropped = world.metric("mcpctl_backend_messages_dropped", reason="notification_ambiguous")
    async with (
        client(world, "/mcp/projects/p1", "alice", logging_callback=alice_log) as alice,
        client(world, "/mcp/projects/p2", "bob", logging_callback=bob_log) as bob,
    ):
        await alice.call_tool(f"{SERVER}__log", {"text": "alice-log-1"})
        stuck = asyncio.ensure_future(bob.call_tool(f"{SERVER}__hang", {}))
        await asyncio.to_thread(world.until_lines, "hanging", hanging + 1)
        await alice.call_tool(f"{SERVER}__log", {"text": "alice-log-2"})
        # Let the deadline end bob's call: cancelling the SDK client's task raced its own
        # transport at exit (BrokenResourceError in the client, not in mcpd).
        with pytest.raises(MCPError, match="no answer within 4 s"):
            await stuck
    assert alice_logs == ["alice-log-1"]
    assert bob_logs == []
    after = world.metric("mcpctl_backend_messages_dropped", reason="notification_ambiguous")
    assert after >= dropped + 1


async def test_progress_goes_to_the_request_that_asked_for_it(world: World) -> None:
    seen: dict[str, list[str | None]] = {"alice": [], "bob": []}

    def recorder(who: str) -> Any:
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen[who].append(message)

        return on_progress

    async with (
        client(world, "/mcp/projects/p1", "alice") as alice,
        client(world, "/mcp/projects/p2", "bob") as bob,
    ):
        await asyncio.gather(
            *(
                c.call_tool(f"{SERVER}__progress", {"text": who}, progress_callback=recorder(who))
                for c, who in ((alice, "alice"), (bob, "bob"))
                for _ in range(5)
            )
        )
    assert seen == {"alice": ["alice"] * 5, "bob": ["bob"] * 5}


# -- no repeated side effects, no poison loops --------------------------------------------


async def test_a_call_that_crashes_the_server_runs_once_and_says_so(world: World) -> None:
    before = wait_running(world.gateway, SERVER)[0]
    appended = len(world.lines("appended"))
    async with (
        client(world, f"/mcp/servers/{SERVER}", "admin") as admin,
        client(world, "/mcp/projects/p2", "bob") as bob,
    ):
        with pytest.raises(MCPError, match="may or may not have run"):
            await admin.call_tool("crash", {"text": "crash-once"})
        # The replacement serves everyone again, and nothing was sent to it twice.
        echoes = await asyncio.gather(
            *(bob.call_tool(f"{SERVER}__echo", {"text": str(i)}) for i in range(10))
        )
        assert [text(e) for e in echoes] == [f"echo: {i}" for i in range(10)]
        after = await admin.call_tool("append", {"text": "after"})
        assert text(after) == f"appended {appended + 2}"
    assert world.lines("appended")[appended:] == ["crash-once", "after"]
    instance = wait_running(world.gateway, SERVER)[0]
    assert instance["restartCount"] == before["restartCount"] + 1
    assert instance["status"] == "RUNNING"


async def test_a_read_only_request_is_sent_again_to_the_replacement(world: World) -> None:
    reads = len(world.lines("reads"))
    async with client(world, f"/mcp/servers/{SERVER}", "admin") as admin:
        read = asyncio.ensure_future(admin.read_resource("mem://slow"))
        await asyncio.to_thread(world.until_lines, "reads", reads + 1)
        with pytest.raises(MCPError, match="may or may not have run"):
            await admin.call_tool("crash", {"text": "crash-during-read"})
        answer = await read
        assert answer.contents[0].text == "content of mem://slow"
    assert len(world.lines("reads")) == reads + 2  # asked once per backend


async def test_cancelled_abandoned_and_late_requests_are_cancelled_at_the_backend(
    world: World,
) -> None:
    cancelled = len(world.lines("cancelled"))
    hanging = len(world.lines("hanging"))
    async with raw_session(world, "/mcp/projects/p2", "bob") as bob:
        # 1. The client cancels: its request ends at once, the backend hears of it.
        pending = asyncio.ensure_future(
            bob.post("/mcp/projects/p2", json=call(7, f"{SERVER}__hang"))
        )
        await asyncio.to_thread(world.until_lines, "hanging", hanging + 1)
        notice = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": 7, "reason": "user pressed stop"},
        }
        assert (await bob.post("/mcp/projects/p2", json=notice)).status_code == 202
        answer = json.loads((await pending).text.rsplit("data: ", 1)[-1])
        assert answer["error"]["message"] == "cancelled by the client"
        reasons = [
            json.loads(line)["reason"] for line in world.until_lines("cancelled", cancelled + 1)
        ]
        assert reasons[-1] == "cancelled by the client"

        # 2. The client goes away: the backend hears of it.
        with pytest.raises(httpx.ReadTimeout):
            await bob.post("/mcp/projects/p2", json=call(8, f"{SERVER}__hang"), timeout=1)
        lines = await asyncio.to_thread(world.until_lines, "cancelled", cancelled + 2)
        assert json.loads(lines[-1])["reason"] == "the client went away"

        # 3. Nobody answers: the deadline ends it with an error that says so.
        started = time.monotonic()
        late = await bob.post("/mcp/projects/p2", json=call(9, f"{SERVER}__hang"))
        assert time.monotonic() - started < TIMEOUT + 5
        error = json.loads(late.text.rsplit("data: ", 1)[-1])["error"]
        assert error["message"].startswith("tools/call got no answer within 4 s")
        await asyncio.to_thread(world.until_lines, "cancelled", cancelled + 3)


# -- bounds ------------------------------------------------------------------------------


async def test_bodies_batches_and_client_info_are_bounded(world: World) -> None:
    async with raw_session(world, f"/mcp/servers/{SERVER}", "admin") as admin:
        big = call(1, "echo", text="x" * 300_000)
        declared = await admin.post(f"/mcp/servers/{SERVER}", json=big)
        assert declared.status_code == 413
        assert "larger than the limit of 262144 bytes" in declared.json()["message"]

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 64 * 1024

        chunked = await admin.post(f"/mcp/servers/{SERVER}", content=chunks())
        assert chunked.status_code == 413

        batch = [call(n, "echo", text="b") for n in range(101)]
        refused = await admin.post(f"/mcp/servers/{SERVER}", json=batch)
        assert refused.status_code == 400
        assert "a batch of 101 messages; the limit is 100" in refused.json()["error"]["message"]
        answers = (await admin.post(f"/mcp/servers/{SERVER}", json=batch[:100])).json()
        assert [a["result"]["content"][0]["text"] for a in answers] == ["echo: b"] * 100

    huge = {
        **INIT,
        "params": {**INIT["params"], "clientInfo": {"name": "x" * 5000, "version": "1"}},
    }
    refused = httpx.post(
        f"{world.gateway.url}/mcp/servers/{SERVER}", json=huge, headers=world.gateway.headers
    )
    assert refused.status_code == 400
    assert "clientInfo and capabilities take" in refused.json()["error"]["message"]


async def test_sessions_are_capped_per_principal(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.tokens['carol']}"}
    sessions = []
    async with httpx.AsyncClient(base_url=world.gateway.url, headers=headers) as http:
        for _ in range(LIMITS.max_sessions_per_principal):
            answer = await http.post("/mcp/projects/p3", json=INIT)
            sessions.append(answer.headers["Mcp-Session-Id"])
        over = await http.post("/mcp/projects/p3", json=INIT)
        assert over.status_code == 429
        assert "already holds 4 sessions" in over.json()["error"]["message"]
        ended = await http.delete("/mcp/projects/p3", headers={"Mcp-Session-Id": sessions[0]})
        assert ended.status_code == 204
        assert (await http.post("/mcp/projects/p3", json=INIT)).status_code == 200


async def test_a_project_list_stops_on_endless_pages_and_repeated_cursors(world: World) -> None:
    async with client(world, "/mcp/projects/p1", "alice") as alice:
        resources = (await alice.list_resources()).resources
        prompts = (await alice.list_prompts()).prompts
    assert len(resources) == LIMITS.max_list_pages  # one item a page, pages forever
    # Its second page names the cursor that led to it: listing stops there (the page repeats
    # the first one's prompt, listed once: a name is listed once, its first definition).
    assert [p.name for p in prompts] == [f"{SERVER}__again"]


async def test_a_message_over_the_line_limit_fails_its_request_not_the_server(
    world: World,
) -> None:
    before = await pid(world)
    async with client(world, f"/mcp/servers/{SERVER}", "admin") as admin:
        with pytest.raises(MCPError, match="larger than 16 MiB"):
            await admin.call_tool("big", {"bytes": 17 * 1024 * 1024})
        assert text(await admin.call_tool("big", {"bytes": 10})) == "x" * 10
    assert await pid(world) == before


# -- authorization and input on every request --------------------------------------------


async def test_malformed_client_messages_never_reach_the_backend(world: World) -> None:
    before = await pid(world)
    path = f"/mcp/servers/{SERVER}"
    async with raw_session(world, path, "admin") as admin:
        bad_params = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": "x"}
        answer = await admin.post(path, json=bad_params)
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == -32602
        no_name = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": 5}}
        answer = await admin.post(path, json=no_name)
        assert answer.json()["error"]["message"] == (
            "Invalid params: params.name: Input should be a valid string"
        )
        bad_id = {"jsonrpc": "2.0", "id": True, "method": "ping"}
        assert (await admin.post(path, json=bad_id)).json()["error"]["code"] == -32600
        bad_notice = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": {"x": 1}},
        }
        assert (await admin.post(path, json=bad_notice)).status_code == 400
        assert (await admin.post(path, json=[1, 2])).status_code == 400
        answer = await admin.post(path, json=call(3, "echo", text="still here"))
        assert answer.json()["result"]["content"][0]["text"] == "echo: still here"
    assert await pid(world) == before
    assert world.metric("mcpctl_mcp_refused_total", reason="invalid") >= 5


async def test_rights_are_checked_on_every_request(world: World) -> None:
    api = httpx.Client(base_url=world.gateway.url, headers=world.gateway.headers, timeout=30)
    user = {"metadata": {"name": "dana@example.com"}, "spec": {"role": "admin"}}
    api.post("/api/v1/users", json=user)
    issued = api.post("/api/v1/users/dana@example.com/tokens", json={}).json()
    world.tokens["dana"] = issued["token"]
    path = f"/mcp/servers/{SERVER}"
    async with raw_session(world, path, "dana") as dana:
        assert (await dana.post(path, json=call(1, "echo", text="a"))).status_code == 200
        user["spec"]["role"] = "member"
        assert api.put("/api/v1/users/dana@example.com", json=user).is_success
        demoted = await dana.post(path, json=call(2, "echo", text="b"))
        assert demoted.status_code == 403
        assert (
            api.delete(f"/api/v1/users/dana@example.com/tokens/{issued['id']}").status_code == 204
        )
        revoked = await dana.post(path, json=call(3, "echo", text="c"))
        assert revoked.status_code == 401
    api.close()


async def test_a_bad_client_message_does_not_end_an_http_backend(world: World) -> None:
    name = "everything-http"
    spec = {
        "package": "@modelcontextprotocol/server-everything",
        "runtime": "node",
        "args": ["streamableHttp"],
        "transport": "streamable-http",
        "port": 3001,
    }
    api = httpx.Client(base_url=world.gateway.url, headers=world.gateway.headers, timeout=30)
    assert api.post("/api/v1/servers", json={"metadata": {"name": name}, "spec": spec}).is_success
    before = wait_running(world.gateway, name)[0]
    path = f"/mcp/servers/{name}"
    async with raw_session(world, path, "admin") as admin:
        for bad in (
            {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": []}},
            {"jsonrpc": "2.0", "method": "notifications/progress", "params": "x"},
            {"jsonrpc": "2.0", "method": "notifications/whatever", "params": {"a": 1}},
            {"jsonrpc": "2.0", "id": "mcpd-1", "result": {"forged": True}},
        ):
            assert (await admin.post(path, json=bad)).status_code in (202, 400)
        answer = await admin.post(path, json=call(1, "echo", message="alive"))
        assert re.search("Echo: alive", answer.text)
    after = wait_running(world.gateway, name)[0]
    assert (after["pid"], after["restartCount"]) == (before["pid"], before["restartCount"])
    api.delete(f"/api/v1/servers/{name}")
    api.close()
