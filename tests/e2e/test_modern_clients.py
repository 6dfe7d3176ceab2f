"""Multi round-trip requests through mcpd: a 2025-era backend asks its client (sampling,
elicitation, roots) while serving a 2026-07-28 client, which gets `input_required` and answers
on a retry. The official SDK client drives it against `@modelcontextprotocol/server-everything`
(npm); tests/servers/misbehaving.py counts how often a call really ran, and hand-written
requests play the hostile tenant: another principal's state, a replay, a forged or altered
state, a client that never retries."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CreateMessageResult,
    ElicitResult,
    ListRootsResult,
    Root,
    TextContent,
)

from mcpctl.gateway.limits import Limits
from tests.e2e.gateway import start_gateway
from tests.helpers.jsonrpc import INIT, MODERN, call, envelope, modern_headers, request
from tests.helpers.mcpd import add_member, bearer, sdk_client, wait_running
from tests.helpers.world import EVERYTHING, MISBEHAVING, World

DEADLINE = 4.0  # MCPD_REQUEST_TIMEOUT here: how long a round trip may wait for its retry
SERVER = "/mcp/servers/misbehaving"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("round-trips")
    state = workdir / "state"
    state.mkdir()
    gateway = start_gateway(
        workdir, "round-trips", hosts=1, limits=Limits(request_timeout=DEADLINE)
    )
    api = httpx.Client(base_url=gateway.url, headers=gateway.headers, timeout=30)
    misbehaving = {"command": sys.executable, "args": [str(MISBEHAVING), str(state)]}
    for name, spec in (("everything", EVERYTHING), ("misbehaving", misbehaving)):
        created = api.post("/api/v1/servers", json={"metadata": {"name": name}, "spec": spec})
        assert created.status_code == 201, created.text
    tokens = {"admin": gateway.token}
    members = []
    for user in ("alice", "bob"):
        tokens[user] = add_member(api, user)
        members.append(f"{user}@example.com")
    project = {"servers": ["everything", "misbehaving"], "members": members}
    assert api.post("/api/v1/projects", json={"metadata": {"name": "team"}, "spec": project})
    wait_running(gateway, "everything")
    wait_running(gateway, "misbehaving")
    yield World(gateway, state, tokens)
    api.close()
    gateway.stop()


# -- the official SDK client against a published 2025-era server ------------------------


async def sample(context: Any, params: Any) -> CreateMessageResult:
    asked = params.messages[0].content.text
    return CreateMessageResult(
        role="assistant", content=TextContent(type="text", text=f"sampled<{asked}>"), model="m"
    )


async def elicit(context: Any, params: Any) -> ElicitResult:
    return ElicitResult(action="accept", content={"color": "teal", "number": 7, "pets": "cats"})


async def roots(context: Any) -> ListRootsResult:
    return ListRootsResult(roots=[Root(uri="file:///work/round-trip", name="work")])


@asynccontextmanager
async def sdk(world: World, path: str, user: str = "admin") -> AsyncIterator[Client]:
    async with sdk_client(
        f"{world.gateway.url}{path}",
        world.tokens[user],
        MODERN,
        sampling_callback=sample,
        elicitation_callback=elicit,
        list_roots_callback=roots,
    ) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "prefix"), [("/mcp/servers/everything", ""), ("/mcp/projects/team", "everything__")]
)
async def test_sampling_elicitation_and_roots_reach_a_2026_client_as_input_required(
    world: World, path: str, prefix: str
) -> None:
    user = "admin" if "servers" in path else "alice"
    async with sdk(world, path, user) as client:
        assert client.protocol_version == MODERN
        sampled = await client.call_tool(f"{prefix}trigger-sampling-request", {"prompt": "2+2?"})
        assert "sampled<" in sampled.content[0].text and "2+2?" in sampled.content[0].text
        elicited = await client.call_tool(f"{prefix}trigger-elicitation-request", {})
        assert "teal" in str(elicited.content), elicited.content
        listed = await client.call_tool(f"{prefix}get-roots-list", {})
        assert "file:///work/round-trip" in str(listed.content), listed.content


# -- hand-written requests: what the state binds, and what a round trip costs --------------


def modern_call(
    tool: str, request_id: int, capabilities: dict[str, Any] | None = None, **args: Any
) -> dict[str, Any]:
    """tools/call as a 2026-07-28 client sends it: one that can sample, by default."""
    meta = envelope({"sampling": {}} if capabilities is None else capabilities)
    return call(request_id, tool, meta=meta, **args)


def retry(first: dict[str, Any], request_id: int, answers: dict[str, Any], state: Any):
    params = {**first["params"], "inputResponses": answers, "requestState": state}
    return {**first, "id": request_id, "params": params}


def post(world: World, user: str, body: dict[str, Any], path: str = "/mcp/projects/team"):
    return post_raw(world, user, body, path, {"Mcp-Name": body["params"]["name"]})


def post_raw(
    world: World,
    user: str,
    body: dict[str, Any],
    path: str = "/mcp/projects/team",
    extra: dict[str, str] | None = None,
) -> httpx.Response:
    headers = {**bearer(world.tokens[user]), **modern_headers(body["method"]), **(extra or {})}
    return httpx.post(f"{world.gateway.url}{path}", json=body, headers=headers, timeout=30)


def reply(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": {"type": "text", "text": text}, "model": "m"}


def input_required(world: World, user: str, body: dict[str, Any]) -> tuple[str, str]:
    answer = post(world, user, body)
    assert answer.status_code == 200, answer.text
    result = answer.json()["result"]
    assert result["resultType"] == "input_required", result
    [(key, question)] = result["inputRequests"].items()
    assert question["method"] == "sampling/createMessage"
    return key, result["requestState"]


def test_a_retry_continues_the_same_call_once_and_only_for_its_principal(world: World) -> None:
    first = modern_call("misbehaving__sample", 1, text="only-once")
    key, state = input_required(world, "alice", first)
    assert state.startswith("mcpd1.") and "alice" not in state  # sealed, not readable
    # Bob presents alice's state (same call): refused, and alice's call still waits for her.
    stolen = post(world, "bob", retry(first, 2, {key: reply("bob's")}, state))
    assert stolen.status_code == 400 and "another principal" in stolen.text, stolen.text
    altered = post(world, "alice", retry(first, 3, {key: reply("x")}, state[:-6] + "AAAAAA"))
    assert altered.status_code == 400 and "not one mcpd gave" in altered.text
    other = modern_call("misbehaving__sample", 4, text="something else")
    moved = post(world, "alice", retry(other, 4, {key: reply("x")}, state))
    assert moved.status_code == 400 and "another request" in moved.text
    done = post(world, "alice", retry(first, 5, {key: reply("hers")}, state))
    assert done.json() == {
        "jsonrpc": "2.0",
        "id": 5,
        "result": {
            "content": [{"type": "text", "text": "sampled: hers"}],
            "isError": False,
            "resultType": "complete",
        },
    }
    assert world.lines("sampled").count("only-once") == 1  # it ran once, across three tries
    # The same state again (a replay) continues nothing.
    replayed = post(world, "alice", retry(first, 6, {key: reply("again")}, state))
    assert "gone" in replayed.json()["error"]["message"], replayed.text
    assert world.lines("sampled").count("only-once") == 1


def test_a_question_the_client_cannot_answer_is_refused_at_once(world: World) -> None:
    body = modern_call("misbehaving__sample", 7, capabilities={}, text="no-sampling")
    answer = post(world, "alice", body).json()
    text = answer["result"]["content"][0]["text"]
    assert text == "sampling refused: the client did not declare the sampling capability"


def test_an_abandoned_round_trip_is_cancelled_at_the_deadline(world: World) -> None:
    cancelled_before = len(world.lines("cancelled"))
    first = modern_call("misbehaving__sample", 8, text="abandoned")
    key, state = input_required(world, "bob", first)
    # Nobody retries: at the deadline the backend's question is refused and its call cancelled.
    outcomes = world.until_lines("sample_outcomes", 1 + len(world.lines("sample_outcomes")))
    assert outcomes[-1] == "sampling refused: the client went away"
    world.until_lines("cancelled", cancelled_before + 1)
    late = post(world, "bob", retry(first, 9, {key: reply("late")}, state))
    assert late.status_code in (200, 400)
    assert "gone" in late.text or "expired" in late.text, late.text


# -- log levels: per request for 2026 clients, per session for 2025 ones -------------------


async def test_log_lines_follow_each_clients_own_level(world: World) -> None:
    seen: dict[str, list[str]] = {"quiet": [], "info": [], "legacy-error": []}

    def collect(into: str) -> Any:
        async def on_log(params: Any) -> None:
            seen[into].append(str(params.data))

        return on_log

    path = "/mcp/servers/misbehaving"
    headers = {"Authorization": f"Bearer {world.gateway.token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        url = f"{world.gateway.url}{path}"
        async with (
            Client(
                streamable_http_client(url, http_client=http),
                mode="legacy",
                logging_callback=collect("legacy-error"),
            ) as legacy,
            Client(
                streamable_http_client(url, http_client=http),
                mode=MODERN,
                logging_callback=collect("quiet"),
            ) as quiet,
            Client(
                streamable_http_client(url, http_client=http),
                mode=MODERN,
                log_level="info",
                logging_callback=collect("info"),
            ) as verbose,
        ):
            await legacy.set_logging_level("error")  # the backend's level is not hers to set
            assert world.until_lines("levels", 1)[0] == "error"
            await quiet.call_tool("log", {"text": "to nobody"})
            await verbose.call_tool("log", {"text": "to the verbose one"})
            # The backend was set to what the most verbose client in flight asked for.
            assert world.until(lambda: "info" in world.lines("levels"))
            await legacy.call_tool("log", {"text": "below her level"})
    assert seen == {"quiet": [], "info": ["to the verbose one"], "legacy-error": []}


# -- the HTTP headers that mirror the body --------------------------------------------------


def test_headers_must_agree_with_the_body(world: World) -> None:
    body = modern_call("misbehaving__echo", 20, text="hi")
    url = f"{world.gateway.url}/mcp/projects/team"
    base = {**bearer(world.tokens["alice"]), **modern_headers("tools/call")}
    cases = {
        "no name": ({}, "mcp-name"),
        "another name": ({"Mcp-Name": "misbehaving__append"}, "mcp-name"),
        "another method": (
            {"Mcp-Name": "misbehaving__echo", "Mcp-Method": "tools/list"},
            "mcp-method",
        ),
        "another version": (
            {"Mcp-Name": "misbehaving__echo", "MCP-Protocol-Version": "2025-11-25"},
            "mcp-protocol-version",
        ),
    }
    for case, (extra, named) in cases.items():
        refused = httpx.post(url, json=body, headers={**base, **extra})
        assert refused.status_code == 400, case
        error = refused.json()["error"]
        assert error["code"] == -32020 and named in error["message"], (case, error)
    twice = [*base.items(), ("Mcp-Name", "misbehaving__echo"), ("Mcp-Name", "misbehaving__echo")]
    assert httpx.post(url, json=body, headers=twice).json()["error"]["code"] == -32020
    # A name sent in the spec's base64 form is decoded before it is compared.
    encoded = {**base, "Mcp-Name": "=?base64?bWlzYmVoYXZpbmdfX2VjaG8=?="}
    served = httpx.post(url, json=body, headers=encoded).json()
    assert served["result"]["content"][0]["text"] == "echo: hi"


# -- project endpoints route by name and URI without an earlier list ---------------------------


async def test_a_2026_client_reads_project_resources_without_listing_first(world: World) -> None:
    async with sdk(world, "/mcp/projects/team", "alice") as client:
        listed = await client.read_resource("demo://resource/static/document/features.md")
        assert len(listed.contents[0].text) > 100  # a listed resource
        templated = await client.read_resource("demo://resource/dynamic/text/7")
        assert "7" in templated.contents[0].text  # a resource template's expansion
        with pytest.raises(MCPError, match="unknown resource"):
            await client.read_resource("demo://nowhere/at-all")


# -- subscriptions/listen ------------------------------------------------------------------


def listen_request(request_id: int, **notifications: Any) -> dict[str, Any]:
    params = {"notifications": notifications, "_meta": envelope(client=None)}
    return request(request_id, "subscriptions/listen", params)


@asynccontextmanager
async def subscription(
    world: World, path: str, user: str, body: dict[str, Any]
) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    headers = {**bearer(world.tokens[user]), **modern_headers("subscriptions/listen")}
    async with (
        httpx.AsyncClient(base_url=world.gateway.url, timeout=60) as http,
        http.stream("POST", path, json=body, headers=headers) as response,
    ):
        assert response.status_code == 200

        async def events() -> AsyncIterator[dict[str, Any]]:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    yield json.loads(line[6:])

        yield events()


async def test_a_project_subscription_gets_only_the_changes_it_asked_for(world: World) -> None:
    uri = "demo://resource/static/document/features.md"  # everything's, within the project
    body = listen_request(
        41, toolsListChanged=True, resourcesListChanged=False, resourceSubscriptions=[uri]
    )
    async with subscription(world, "/mcp/projects/team", "alice", body) as events:
        ack = await anext(events)
        assert ack["method"] == "notifications/subscriptions/acknowledged"
        assert ack["params"]["notifications"] == {
            "toolsListChanged": True,
            "resourceSubscriptions": [uri],
        }
        assert ack["params"]["_meta"] == {"io.modelcontextprotocol/subscriptionId": 41}
        async with sdk(world, "/mcp/projects/team", "alice") as client:
            await client.call_tool("misbehaving__changed", {})
        changed = await asyncio.wait_for(anext(events), 30)
        assert changed == {
            "jsonrpc": "2.0",
            "method": "notifications/tools/list_changed",
            "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": 41}},
        }


async def test_a_resource_subscription_gets_updates_of_its_uris(world: World) -> None:
    uri = "demo://resource/static/document/features.md"
    body = listen_request(42, resourceSubscriptions=[uri])
    async with subscription(world, "/mcp/servers/everything", "admin", body) as events:
        ack = await anext(events)
        assert ack["params"]["notifications"] == {"resourceSubscriptions": [uri]}
        async with sdk(world, "/mcp/servers/everything") as client:
            await client.call_tool("toggle-subscriber-updates", {})  # every 5 s
            try:
                updated = await asyncio.wait_for(anext(events), 30)
            finally:
                await client.call_tool("toggle-subscriber-updates", {})
        assert updated["method"] == "notifications/resources/updated"
        assert updated["params"]["uri"] == uri
        assert updated["params"]["_meta"] == {"io.modelcontextprotocol/subscriptionId": 42}


def test_a_subscription_filter_is_checked(world: World) -> None:
    body = listen_request(43, resourceSubscriptions="not a list")
    refused = post_raw(world, "alice", body)
    assert refused.status_code == 400 and "resourceSubscriptions" in refused.text


# -- lists: cacheable, and shared at the backend ----------------------------------------------


async def test_a_burst_of_lists_costs_the_backend_one_until_the_list_changes(
    world: World,
) -> None:
    body = request(1, "tools/list", {"_meta": envelope(client=None)})
    before = len(world.lines("lists"))

    async def burst() -> list[dict[str, Any]]:
        return await asyncio.gather(
            *(
                asyncio.to_thread(post_raw, world, "admin", {**body, "id": i}, SERVER)
                for i in range(20)
            )
        )

    answers = [a.json() for a in await burst()]
    assert len({json.dumps(a["result"], sort_keys=True) for a in answers}) == 1
    result = answers[0]["result"]
    assert result["resultType"] == "complete" and {"ttlMs", "cacheScope"} <= result.keys()
    assert len(world.lines("lists")) - before <= 1  # twenty clients, one backend list at most
    changed = post(world, "admin", modern_call("changed", 99), SERVER).json()  # no list before
    assert changed["result"]["content"][0]["text"] == "changed"  # the backend said so
    again = len(world.lines("lists"))
    await burst()
    assert len(world.lines("lists")) == again + 1


# -- trace context travels to the backend ----------------------------------------------------


def test_trace_context_in_meta_reaches_the_backend(world: World) -> None:
    trace = {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "vendor=opaque",
        "baggage": "tenant=alice",
    }
    body = modern_call("meta", 50, capabilities={})
    body["params"]["_meta"].update(trace)
    seen = json.loads(post(world, "admin", body, SERVER).json()["result"]["content"][0]["text"])
    assert seen == trace  # and nothing of the 2026 envelope reaches a 2025-era backend
    session = httpx.post(
        f"{world.gateway.url}{SERVER}", json=INIT, headers=world.gateway.headers
    ).headers["Mcp-Session-Id"]
    legacy = call(2, "meta", meta=trace)
    headers = {**world.gateway.headers, "Mcp-Session-Id": session, "Accept": "application/json"}
    answered = httpx.post(f"{world.gateway.url}{SERVER}", json=legacy, headers=headers).json()
    assert json.loads(answered["result"]["content"][0]["text"]) == trace
