"""Backends that speak only MCP 2026-07-28 (tests/servers/modern.py, built with the official
SDK's 2026 server API; it refuses `initialize`) behind mcpd: found with `server/discover`,
called with the per-request envelope, served to the official SDK client in handshake
(`legacy`) and 2026-07-28 modes, through a server endpoint and a project endpoint, over
STDIO and over Streamable HTTP. A 2025-era backend in the same project works as before.
The backend's `input_required` reaches a legacy client as questions on its stream and a
2026 client as mcpd's own input_required; its subscriptions reach a 2025 client's GET stream
and a 2026 client's subscriptions/listen."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.client import Client
from mcp_types import CreateMessageResult, ElicitResult, TextContent

from tests.e2e.gateway import Gateway, start_gateway
from tests.helpers import jsonrpc
from tests.helpers.jsonrpc import ACCEPT, MODERN, envelope, initialize, modern_headers
from tests.helpers.mcpd import sdk_client, wait_running
from tests.helpers.waiting import until
from tests.helpers.world import lines as state_lines

SERVERS = Path(__file__).parents[1] / "servers"
ENVELOPE = (
    "io.modelcontextprotocol/protocolVersion",
    "io.modelcontextprotocol/clientCapabilities",
    "io.modelcontextprotocol/clientInfo",
)
MODES = ["legacy", MODERN]
# ping and logging/setLevel from legacy-mode clients are meant: mcpd answers them for the backend
pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")


@dataclass
class World:
    gateway: Gateway
    states: dict[str, Path]  # server -> the directory its requests are recorded in


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("modern")
    gateway = start_gateway(workdir, "modern-backends", hosts=1)
    api = httpx.Client(base_url=gateway.url, headers=gateway.headers, timeout=30)
    states = {name: workdir / name for name in ("modern", "modern-http", "classic")}
    for state in states.values():
        state.mkdir()
    script = str(SERVERS / "modern.py")
    specs: dict[str, dict[str, Any]] = {
        "modern": {"command": sys.executable, "args": [script, str(states["modern"])]},
        "modern-http": {
            "command": sys.executable,
            "args": [script, str(states["modern-http"]), "--http"],
            "transport": "streamable-http",
            "port": 8000,
            "path": "/mcp",
        },
        "classic": {
            "command": sys.executable,
            "args": [str(SERVERS / "misbehaving.py"), str(states["classic"])],
        },
    }
    for name, spec in specs.items():
        created = api.post("/api/v1/servers", json={"metadata": {"name": name}, "spec": spec})
        assert created.status_code == 201, created.text
    project = {"servers": ["modern", "modern-http", "classic"]}
    created = api.post("/api/v1/projects", json={"metadata": {"name": "mixed"}, "spec": project})
    assert created.status_code == 201, created.text
    for name in specs:
        wait_running(gateway, name)
    yield World(gateway, states)
    api.close()
    gateway.stop()


@asynccontextmanager
async def connect(world: World, path: str, mode: str, **options: Any) -> AsyncIterator[Client]:
    url = f"{world.gateway.url}{path}"
    async with sdk_client(url, world.gateway.token, mode, **options) as client:
        yield client


def recorded(world: World, server: str) -> list[dict[str, Any]]:
    path = world.states[server] / "requests.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("server", ["modern", "modern-http"])
@pytest.mark.parametrize("mode", MODES)
async def test_server_endpoint(world: World, server: str, mode: str) -> None:
    seen = len(recorded(world, server))
    updates: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append(progress)

    async with connect(world, f"/mcp/servers/{server}", mode) as client:
        assert client.protocol_version == (MODERN if mode == MODERN else "2025-11-25")
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"echo", "envelope", "slow", "pid"} <= tools
        echoed = await client.call_tool("echo", {"text": mode})
        assert echoed.content[0].text == f"echo: {mode}"
        slow = await client.call_tool("slow", {"steps": 3}, progress_callback=on_progress)
        assert slow.content[0].text == "done 3"
        assert updates == [1, 2, 3]
        prompt = await client.get_prompt("greet", {"name": "Ada"})
        assert "Hello, Ada" in prompt.messages[0].content.text
        resources = (await client.list_resources()).resources
        assert [str(r.uri) for r in resources] == ["modern://readme"]
        read = await client.read_resource("modern://readme")
        assert read.contents[0].text == "This server speaks only MCP 2026-07-28."
        said = await client.call_tool("region", {"region": "eu-west", "text": "hi"})
        assert said.content[0].text == "eu-west: hi"
        if mode == "legacy":  # 2026-07-28 has neither; mcpd answers them for the backend
            await client.send_ping()
            await client.set_logging_level("info")
        meta = json.loads((await client.call_tool("envelope", {})).content[0].text)
    # What the backend got: mcpd's envelope, whoever asked, on every request.
    assert meta["io.modelcontextprotocol/protocolVersion"] == MODERN
    assert meta["io.modelcontextprotocol/clientInfo"]["name"] == "mcpd"
    capabilities = meta["io.modelcontextprotocol/clientCapabilities"]
    assert {"roots", "sampling", "elicitation"} <= capabilities.keys()
    requests = recorded(world, server)[seen:]
    methods = [r["method"] for r in requests]
    assert methods.count("tools/call") == 4 and "prompts/get" in methods, methods
    assert "ping" not in methods and "logging/setLevel" not in methods
    for request in requests:
        assert all(key in request["meta"] for key in ENVELOPE), request
    slow_call = next(
        r for r in requests if r["method"] == "tools/call" and "progressToken" in r["meta"]
    )
    assert slow_call["meta"]["io.modelcontextprotocol/protocolVersion"] == MODERN
    if server == "modern-http":  # SEP-2243 headers on every POST, no session
        for request in requests:
            headers = request["headers"]
            assert headers["mcp-protocol-version"] == MODERN, request
            assert headers["mcp-method"] == request["method"], request
            assert "mcp-session-id" not in headers
        read_request = next(r for r in requests if r["method"] == "resources/read")
        assert read_request["headers"]["mcp-name"] == "modern://readme"
        region = next(r for r in requests if r["headers"].get("mcp-name") == "region")
        assert region["headers"]["mcp-param-region"] == "eu-west"  # its x-mcp-header


@pytest.mark.parametrize("mode", MODES)
async def test_project_endpoint_mixes_2026_only_and_2025_backends(world: World, mode: str) -> None:
    updates: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append(progress)

    async with connect(world, "/mcp/projects/mixed", mode) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"modern__echo", "modern-http__slow", "classic__echo"} <= tools
        for server in ("modern", "modern-http"):
            echoed = await client.call_tool(f"{server}__echo", {"text": server})
            assert echoed.content[0].text == f"echo: {server}"
        classic = await client.call_tool("classic__echo", {"text": "2025"})
        assert "2025" in classic.content[0].text
        slow = await client.call_tool(
            "modern-http__slow", {"steps": 2}, progress_callback=on_progress
        )
        assert slow.content[0].text == "done 2"
        assert updates == [1, 2]
        said = await client.call_tool("modern-http__region", {"region": "us", "text": mode})
        assert said.content[0].text == f"us: {mode}"
        prompt = await client.get_prompt("modern__greet", {"name": "Grace"})
        assert "Hello, Grace" in prompt.messages[0].content.text
        uris = [str(r.uri) for r in (await client.list_resources()).resources]
        assert "modern://readme" in uris
        read = await client.read_resource("modern://readme")
        assert "2026-07-28" in read.contents[0].text
        if mode == "legacy":
            await client.set_logging_level("info")  # reaches all three; the 2026 ones answer here


def test_instances_are_running(world: World) -> None:
    api = httpx.Client(base_url=world.gateway.url, headers=world.gateway.headers, timeout=30)
    for server in ("modern", "modern-http"):
        items = api.get("/api/v1/instances", params={"server": server}).json()["items"]
        assert [i["status"] for i in items] == ["RUNNING"], items
        assert items[0].get("lastError") is None
    api.close()


def test_mcpctl_get_instances_shows_them_running(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from mcpctl.cli.main import main

    monkeypatch.setenv("MCPCTL_SERVER", world.gateway.url)
    monkeypatch.setenv("MCPCTL_TOKEN", world.gateway.token)
    monkeypatch.setenv("MCPCTL_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.setattr("mcpctl.cli.output.console.width", 200)
    with pytest.raises(SystemExit) as exited:
        main(["get", "instances"])
        raise SystemExit(0)
    out = capsys.readouterr().out
    assert exited.value.code == 0, out
    rows = {line.split()[1]: line.split()[2] for line in out.splitlines()[1:] if line.strip()}
    assert rows == {"modern": "RUNNING", "modern-http": "RUNNING", "classic": "RUNNING"}, out


def lines(world: World, server: str, name: str) -> int:
    return len(state_lines(world.states[server], name))


@pytest.mark.parametrize("server", ["modern", "modern-http"])
def test_a_request_whose_client_left_is_cancelled_at_the_backend(world: World, server: str) -> None:
    """On STDIO mcpd sends `notifications/cancelled`; over Streamable HTTP the SDK transport
    closes the request's POST, which is the 2026-07-28 spelling of a cancellation."""
    hanging, cancelled = lines(world, server, "hanging"), lines(world, server, "cancelled")
    body = jsonrpc.call(1, "hang", meta=envelope())
    headers = {**world.gateway.headers, **modern_headers("tools/call", "hang")}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{world.gateway.url}/mcp/servers/{server}", json=body, headers=headers, timeout=2
        )
    until(lambda: lines(world, server, "hanging") > hanging, timeout=20)
    until(lambda: lines(world, server, "cancelled") > cancelled, timeout=20)


@pytest.mark.parametrize("revision", ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"])
def test_every_handshake_revision_reaches_a_2026_only_backend(world: World, revision: str) -> None:
    """Raw requests of each older revision: results come back in that revision's shape (no
    `resultType`, no cache hints), from a backend that never saw an `initialize`."""
    headers = {**world.gateway.headers, **ACCEPT}
    init = initialize(revision, request_id=1)
    with httpx.Client(base_url=world.gateway.url, headers=headers, timeout=60) as http:
        opened = http.post("/mcp/servers/modern", json=init)
        answer = opened.json()["result"]
        assert answer["protocolVersion"] == revision
        assert answer["serverInfo"]["name"] == "modern-test"
        assert answer["instructions"] == "A 2026-07-28-only test server."
        session = {
            "Mcp-Session-Id": opened.headers["Mcp-Session-Id"],
            "MCP-Protocol-Version": revision,
        }
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (
            http.post("/mcp/servers/modern", json=initialized, headers=session).status_code == 202
        )
        call = jsonrpc.call(2, "echo", text=revision)
        result = http.post("/mcp/servers/modern", json=call, headers=session).json()["result"]
        assert result["content"][0]["text"] == f"echo: {revision}"
        assert "resultType" not in result
        read = jsonrpc.request(3, "resources/read", {"uri": "modern://readme"})
        result = http.post("/mcp/servers/modern", json=read, headers=session).json()["result"]
        assert result["contents"][0]["text"] == "This server speaks only MCP 2026-07-28."
        assert "ttlMs" not in result and "cacheScope" not in result


def test_a_tool_never_listed_gets_its_x_mcp_header(world: World, tmp_path: Path) -> None:
    """A call reaching a fresh HTTP backend before any client listed its tools: mcpd lists
    them itself first, so the call carries the `Mcp-Param-Region` header (base64 for a
    non-ASCII value) and the backend accepts it."""
    api = httpx.Client(base_url=world.gateway.url, headers=world.gateway.headers, timeout=30)
    spec = {
        "command": sys.executable,
        "args": [str(SERVERS / "modern.py"), str(tmp_path), "--http"],
        "transport": "streamable-http",
        "port": 8000,
    }
    created = api.post("/api/v1/servers", json={"metadata": {"name": "fresh"}, "spec": spec})
    assert created.status_code == 201, created.text
    try:
        wait_running(world.gateway, "fresh")
        body = jsonrpc.call(1, "region", meta=envelope(), region="Zürich", text="grüezi")
        headers = {
            **modern_headers("tools/call", "region"),
            "Mcp-Param-Region": "=?base64?WsO8cmljaA==?=",
        }
        answer = api.post("/mcp/servers/fresh", json=body, headers=headers).json()
        assert answer["result"]["content"][0]["text"] == "Zürich: grüezi", answer
        recorded = [
            json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()
        ]
        # mcpd's own subscriptions/listen (opened at start) goes its own way
        requests = [r for r in recorded if r["method"] != "subscriptions/listen"]
        assert [r["method"] for r in requests] == ["server/discover", "tools/list", "tools/call"]
        assert requests[2]["headers"]["mcp-param-region"] == "=?base64?WsO8cmljaA==?="
    finally:
        api.delete("/api/v1/servers/fresh")
        api.close()


# -- input_required from the backend -----------------------------------------------------------


async def sample(context: Any, params: Any) -> CreateMessageResult:
    asked = params.messages[0].content.text
    return CreateMessageResult(
        role="assistant", content=TextContent(type="text", text=f"sampled<{asked}>"), model="m"
    )


async def elicit(context: Any, params: Any) -> ElicitResult:
    return ElicitResult(action="accept", content={"name": "Ada"})


ANSWERING = {"sampling_callback": sample, "elicitation_callback": elicit}


@pytest.mark.parametrize("server", ["modern", "modern-http"])
@pytest.mark.parametrize("endpoint", ["server", "project"])
@pytest.mark.parametrize("mode", MODES)
async def test_input_required_from_the_backend_reaches_clients_of_both_eras(
    world: World, server: str, endpoint: str, mode: str
) -> None:
    """A legacy client answers the backend's questions on its stream (its callbacks); a
    2026 client gets mcpd's own input_required and retries. Either way the backend sees one
    call in three tries (an elicitation round, a sampling round) and completes it once."""
    path, prefix = (
        (f"/mcp/servers/{server}", "")
        if endpoint == "server"
        else ("/mcp/projects/mixed", f"{server}__")
    )
    tries, completed = lines(world, server, "ask-tries"), lines(world, server, "ask-completed")
    thought = lines(world, server, "think-completed")
    seen = len(recorded(world, server))
    async with connect(world, path, mode, **ANSWERING) as client:
        asked = await client.call_tool(f"{prefix}ask", {})
        assert asked.content[0].text == "Ada learnt: sampled<Ada?>", asked
        state_only = await client.call_tool(f"{prefix}think", {"rounds": 3})
        assert state_only.content[0].text == "thought 3 times"
    assert lines(world, server, "ask-tries") == tries + 3
    assert lines(world, server, "ask-completed") == completed + 1
    assert lines(world, server, "think-completed") == thought + 1
    calls = [r for r in recorded(world, server)[seen:] if r["method"] == "tools/call"]
    assert len(calls) == 3 + 4, calls  # ask: 3 tries, think: 4
    first, second, third = calls[:3]
    assert "inputResponses" not in first["keys"] and "requestState" not in first["keys"]
    assert {"inputResponses", "requestState"} <= set(second["keys"]) & set(third["keys"])
    for call in calls:
        assert call["meta"]["io.modelcontextprotocol/protocolVersion"] == MODERN


# -- subscriptions from the backend --------------------------------------------------------------


@pytest.mark.parametrize("server", ["modern", "modern-http"])
async def test_a_2025_clients_stream_gets_the_backends_changes(world: World, server: str) -> None:
    """The backend announces on mcpd's subscriptions/listen; a legacy client (GET stream)
    gets list_changed, and resources/updated for what it subscribed with resources/subscribe
    (answered by mcpd, which re-opens its listen with the URI)."""
    got: asyncio.Queue[str] = asyncio.Queue()

    async def on_message(message: Any) -> None:
        method = getattr(message, "method", None)
        if isinstance(method, str) and method.startswith("notifications/"):
            got.put_nowait(method)

    async def next_change() -> str:
        while True:
            method = await asyncio.wait_for(got.get(), 20)
            if method != "notifications/message":
                return method

    tool, uri = f"grown-{server}-legacy", f"modern://watched-by-{server}"
    ended = lines(world, server, "listens-ended")
    async with connect(world, f"/mcp/servers/{server}", "legacy", message_handler=on_message) as c:
        await c.subscribe_resource(uri)
        # mcpd listens again with the URI, then closes its listen before (over HTTP: its POST)
        until(lambda: lines(world, server, "listens-ended") > ended, timeout=20)
        await asyncio.sleep(0.5)  # the GET stream opens after initialized
        await c.call_tool("grow", {"name": tool})
        assert await next_change() == "notifications/tools/list_changed"
        assert tool in {t.name for t in (await c.list_tools()).tools}
        await c.call_tool("touch", {"uri": uri})
        assert await next_change() == "notifications/resources/updated"
    listens = [r for r in recorded(world, server) if r["method"] == "subscriptions/listen"]
    assert listens and all(
        r["meta"]["io.modelcontextprotocol/protocolVersion"] == MODERN for r in listens
    )


@pytest.mark.parametrize("server", ["modern", "modern-http"])
@pytest.mark.parametrize("endpoint", ["server", "project"])
async def test_a_2026_clients_listen_gets_the_backends_changes(
    world: World, server: str, endpoint: str
) -> None:
    """Project endpoints do not offer resource subscriptions (their capabilities say
    `resources: {}`), so only the server endpoint asks for resources/updated."""
    path, prefix = (
        (f"/mcp/servers/{server}", "")
        if endpoint == "server"
        else ("/mcp/projects/mixed", f"{server}__")
    )
    uris = ["modern://readme"] if endpoint == "server" else []
    tool = f"grown-{server}-{endpoint}"
    async with connect(world, path, MODERN) as client:
        listen = client.listen(tools_list_changed=True, resource_subscriptions=uris)
        async with listen as subscription:
            assert subscription.honored.tools_list_changed
            assert (subscription.honored.resource_subscriptions or []) == uris
            events = aiter(subscription)
            async with connect(world, path, MODERN) as other:
                await other.call_tool(f"{prefix}grow", {"name": tool})
                changed = await asyncio.wait_for(anext(events), 20)
                assert type(changed).__name__ == "ToolsListChanged", changed
                if uris:
                    await other.call_tool(f"{prefix}touch", {"uri": uris[0]})
                    updated = await asyncio.wait_for(anext(events), 20)
                    assert getattr(updated, "uri", None) == uris[0], updated
        names = {t.name for t in (await client.list_tools()).tools}
        assert f"{prefix}{tool}" in names
