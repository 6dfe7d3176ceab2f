"""MCP through mcpd's gateway with the official SDK client, against real servers this project
did not write: `mcp-server-time` (PyPI, run by uvx) and `@modelcontextprotocol/server-everything`
(npm, run by npx), on the Ray runtime with the local orchestrator."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError

from tests.e2e.gateway import Gateway, start_gateway
from tests.helpers import jsonrpc
from tests.helpers.jsonrpc import ACCEPT, initialize
from tests.helpers.mcpd import add_member, add_server, instances, sdk_client, wait_running
from tests.helpers.processes import exited
from tests.helpers.waiting import until, until_async
from tests.helpers.world import EVERYTHING

TIME = {"package": "mcp-server-time", "runtime": "python", "args": ["--local-timezone", "UTC"]}
MODES = ["legacy", "2026-07-28", "auto"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(tmp_path_factory.mktemp("gateway"), "e2e-gateway")
    for name, spec in (("everything", EVERYTHING), ("time", TIME)):
        add_server(gateway, name, spec)
    project = {"metadata": {"name": "tools"}, "spec": {"servers": ["everything", "time"]}}
    assert (
        httpx.post(
            f"{gateway.url}/api/v1/projects", headers=gateway.headers, json=project
        ).status_code
        == 201
    )
    prompt = {
        "metadata": {"name": "greet"},
        "spec": {"text": "Say hello to {name}.", "arguments": [{"name": "name", "required": True}]},
    }
    assert (
        httpx.post(
            f"{gateway.url}/api/v1/projects/tools/prompts", headers=gateway.headers, json=prompt
        ).status_code
        == 201
    )
    wait_running(gateway, "everything")
    wait_running(gateway, "time")
    yield gateway
    gateway.stop()


@asynccontextmanager
async def connect(
    gateway: Gateway, path: str, mode: str = "legacy", token: str | None = None
) -> AsyncIterator[Client]:
    async with sdk_client(f"{gateway.url}{path}", token or gateway.token, mode) as client:
        yield client


@pytest.mark.parametrize("mode", MODES)
async def test_server_endpoint_tools_prompts_resources(gateway: Gateway, mode: str) -> None:
    async with connect(gateway, "/mcp/servers/everything", mode) as client:
        expected = "2026-07-28" if mode != "legacy" else "2025-11-25"
        assert client.protocol_version == expected
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"echo", "get-sum", "trigger-long-running-operation"} <= tools
        echoed = await client.call_tool("echo", {"message": f"hello {mode}"})
        assert echoed.content[0].text == f"Echo: hello {mode}"
        total = await client.call_tool("get-sum", {"a": 2, "b": 40})
        assert "42" in total.content[0].text
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert "simple-prompt" in prompts
        prompt = await client.get_prompt("args-prompt", {"city": "Paris"})
        assert "Paris" in prompt.messages[0].content.text
        resources = (await client.list_resources()).resources
        document = next(r for r in resources if r.name == "features.md")
        read = await client.read_resource(document.uri)
        assert len(read.contents[0].text) > 100


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_progress_notifications_reach_the_caller(gateway: Gateway, mode: str) -> None:
    updates: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append(progress)

    async with connect(gateway, "/mcp/servers/everything", mode) as client:
        result = await client.call_tool(
            "trigger-long-running-operation",
            {"duration": 1, "steps": 4},
            progress_callback=on_progress,
        )
    assert "completed" in result.content[0].text.lower()
    assert updates == [1, 2, 3, 4]


@pytest.mark.parametrize("revision", ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"])
def test_every_handshake_revision_is_accepted(gateway: Gateway, revision: str) -> None:
    headers = {**gateway.headers, **ACCEPT}
    init = initialize(revision, request_id=1)
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=60) as http:
        answer = http.post("/mcp/servers/time", json=init)
        assert answer.json()["result"]["protocolVersion"] == revision
        session = {
            "Mcp-Session-Id": answer.headers["Mcp-Session-Id"],
            "MCP-Protocol-Version": revision,
        }
        assert (
            http.post(
                "/mcp/servers/time",
                json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                headers=session,
            ).status_code
            == 202
        )
        call = jsonrpc.call(2, "get_current_time", timezone="UTC")
        result = http.post("/mcp/servers/time", json=call, headers=session).json()
        assert result["id"] == 2 and "UTC" in result["result"]["content"][0]["text"]
        assert http.delete("/mcp/servers/time", headers=session).status_code == 204
        gone = http.post("/mcp/servers/time", json=call, headers=session)
        assert gone.status_code == 404


def test_unknown_revision_gets_the_latest_and_bad_requests_are_refused(gateway: Gateway) -> None:
    headers = {**gateway.headers, **ACCEPT}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=60) as http:
        init = initialize("1999-01-01", request_id=1)
        assert (
            http.post("/mcp/servers/time", json=init).json()["result"]["protocolVersion"]
            == "2025-11-25"
        )
        assert http.post("/mcp/servers/time", content=b"{nope").status_code == 400
        no_session = http.post("/mcp/servers/time", json=jsonrpc.request(2, "tools/list"))
        assert no_session.status_code == 400
        assert http.post("/mcp/servers/nope", json=init).status_code == 404
        modern = {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/list",
            "params": {
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2030-01-01",
                    "io.modelcontextprotocol/clientCapabilities": {},
                }
            },
        }
        mirrored = {"MCP-Protocol-Version": "2030-01-01", "Mcp-Method": "tools/list"}
        refused = http.post("/mcp/servers/time", json=modern, headers=mirrored)
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == -32022
        assert "2025-11-25" in refused.json()["error"]["data"]["supported"]
    assert httpx.post(f"{gateway.url}/mcp/servers/time", json=init).status_code == 401


async def test_project_endpoint_aggregates_and_routes(gateway: Gateway) -> None:
    async with connect(gateway, "/mcp/projects/tools") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"everything__echo", "time__get_current_time", "time__convert_time"} <= names
        echoed = await client.call_tool("everything__echo", {"message": "via project"})
        assert echoed.content[0].text == "Echo: via project"
        now = await client.call_tool("time__get_current_time", {"timezone": "UTC"})
        assert "UTC" in now.content[0].text
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert {"greet", "everything__simple-prompt"} <= prompts
        greeting = await client.get_prompt("greet", {"name": "Ada"})
        assert greeting.messages[0].content.text == "Say hello to Ada."
        resources = (await client.list_resources()).resources
        features = next(r for r in resources if r.name == "everything__features.md")
        assert len((await client.read_resource(features.uri)).contents[0].text) > 100
        with pytest.raises(MCPError, match="unknown name 'nope__tool'"):
            await client.call_tool("nope__tool", {})


async def test_project_access_is_checked(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url, headers=gateway.headers) as api:
        token = add_member(api, "eve")
    init = initialize(request_id=1)
    as_eve = {"Authorization": f"Bearer {token}"}
    # A project she is not in answers exactly like one that does not exist.
    hidden = httpx.post(f"{gateway.url}/mcp/projects/tools", json=init, headers=as_eve)
    missing = httpx.post(f"{gateway.url}/mcp/projects/nope", json=init, headers=as_eve)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["message"] == "project 'tools' not found"
    assert (
        httpx.post(f"{gateway.url}/mcp/servers/time", json=init, headers=as_eve).status_code == 403
    )
    project = httpx.get(f"{gateway.url}/api/v1/projects/tools", headers=gateway.headers).json()
    project["spec"]["members"] = ["eve@example.com"]
    assert (
        httpx.put(
            f"{gateway.url}/api/v1/projects/tools", headers=gateway.headers, json=project
        ).status_code
        == 200
    )
    async with connect(gateway, "/mcp/projects/tools", token=token) as client:
        assert (await client.call_tool("everything__echo", {"message": "member"})).content[
            0
        ].text == "Echo: member"


async def test_fifty_concurrent_clients_on_one_stdio_backend(gateway: Gateway) -> None:
    async def one(i: int) -> str:
        async with connect(
            gateway, "/mcp/servers/everything", "legacy" if i % 2 else "2026-07-28"
        ) as client:
            result = await client.call_tool("echo", {"message": f"client-{i}"})
            return result.content[0].text

    answers = await asyncio.gather(*(one(i) for i in range(50)))
    assert answers == [f"Echo: client-{i}" for i in range(50)]
    instances = wait_running(gateway, "everything")
    assert len(instances) == 1  # one backend process served them all


async def test_killed_backend_is_replaced_and_clients_recover(gateway: Gateway) -> None:
    before = wait_running(gateway, "time")[0]
    async with connect(gateway, "/mcp/servers/time") as client:
        first = await client.call_tool("get_current_time", {"timezone": "UTC"})
        assert not first.is_error
        calls = [
            asyncio.ensure_future(client.call_tool("get_current_time", {"timezone": "UTC"}))
            for _ in range(10)
        ]
        os.killpg(before["pid"], signal.SIGKILL)
        # A tool call is never sent again: one the killed process may have read says so; the
        # others are answered, before the kill or (never having reached it) by the replacement.
        for answer in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(answer, BaseException):
                assert isinstance(answer, MCPError), answer
                assert "may or may not have run" in str(answer)
            else:
                assert not answer.is_error
        after = await until_async(  # the kill is seen through the watch
            lambda: wait_running(gateway, "time")[0],
            lambda after: after["pid"] != before["pid"],
            timeout=120,
            interval=0.1,
            what=lambda after: after,
        )
        assert after["restartCount"] == before["restartCount"] + 1
        again = await client.call_tool("get_current_time", {"timezone": "UTC"})
        assert "UTC" in again.content[0].text
    report = httpx.get(
        f"{gateway.url}/api/v1/analytics/history",
        params={"server": "time", "window": "1h"},
        headers=gateway.headers,
    ).json()
    [row] = report["servers"]
    assert row["restarts"] >= 1
    assert any(
        "exited" in r["reason"] or "killed" in r["reason"] or "signal" in r["reason"]
        for r in row["crashReasons"]
    )
    assert 0 < row["uptimePercent"] < 100


def test_metrics_count_requests_without_secrets(gateway: Gateway) -> None:
    text = httpx.get(f"{gateway.url}/metrics").text
    assert 'mcpctl_mcp_requests_total{method="tools/call",target="servers/everything"}' in text
    assert 'mcpctl_instances{server="time",status="RUNNING"} 1.0' in text
    assert "mcpctl_mcp_request_duration_seconds_bucket" in text
    assert gateway.token not in text


def test_deleting_a_server_stops_its_process(gateway: Gateway, tmp_path: Path) -> None:
    spec = {"command": "uvx", "args": ["mcp-server-time"]}
    add_server(gateway, "doomed", spec)
    pid = wait_running(gateway, "doomed")[0]["pid"]
    assert (
        httpx.delete(f"{gateway.url}/api/v1/servers/doomed", headers=gateway.headers).status_code
        == 204
    )
    until(lambda: exited(pid), timeout=30, interval=0.1, what="process still running")


@pytest.mark.parametrize(
    ("transport", "args", "path"),
    [("streamable-http", ["streamableHttp"], "/mcp"), ("sse", ["sse"], "/sse")],
)
async def test_http_backends_are_reached_over_loopback(
    gateway: Gateway, transport: str, args: list[str], path: str
) -> None:
    name = f"everything-{transport.split('-')[0]}"
    spec = {**EVERYTHING, "args": args, "transport": transport, "port": 3001, "path": path}
    add_server(gateway, name, spec)
    instance = wait_running(gateway, name)[0]
    assert instance["address"].startswith("http://127.0.0.1:") and instance["address"].endswith(
        path
    )
    assert not instance["address"].startswith(
        "http://127.0.0.1:3001"
    )  # a free port, not the declared one
    async with connect(gateway, f"/mcp/servers/{name}", "2026-07-28") as client:
        echoed = await client.call_tool("echo", {"message": transport})
        assert echoed.content[0].text == f"Echo: {transport}"
    httpx.delete(f"{gateway.url}/api/v1/servers/{name}", headers=gateway.headers)


async def test_a_crashed_host_actor_is_restarted_and_readopts(gateway: Gateway) -> None:
    """Kill the Ray worker process of the host that runs `time`: Ray restarts the actor, mcpd
    hands it its servers again, and there is exactly one instance afterwards."""
    runtime = gateway.runtime
    index = runtime._placed["time"]
    host_pid = await runtime.hosts[index].process_id.remote()
    before = wait_running(gateway, "time")[0]
    os.kill(host_pid, signal.SIGKILL)
    items = await until_async(
        lambda: instances(gateway, "time"),
        lambda items: (
            items and items[0]["status"] == "RUNNING" and items[0]["pid"] != before["pid"]
        ),
        timeout=120,
        interval=0.2,
        what=lambda items: items,
    )
    assert len(items) == 1
    assert exited(before["pid"])  # the old server died with its host: no duplicate
    assert await runtime.hosts[index].process_id.remote() != host_pid
    pid_files = sorted(p.name for p in (gateway.data_dir / "run").glob("time-*.json"))
    assert pid_files == ["time-0.json"]
    async with connect(gateway, "/mcp/servers/time") as client:
        result = await client.call_tool("get_current_time", {"timezone": "UTC"})
        assert "UTC" in result.content[0].text


def test_instance_logs_through_the_api_and_the_cli(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = {"command": "sh", "args": ["-c", "echo hello-from-stderr >&2; exec uvx mcp-server-time"]}
    add_server(gateway, "chatty", spec)
    wait_running(gateway, "chatty")
    text = httpx.get(
        f"{gateway.url}/api/v1/instances/chatty-0/logs",
        params={"tail": "20"},
        headers=gateway.headers,
    ).text
    assert "hello-from-stderr" in text
    assert (
        httpx.get(
            f"{gateway.url}/api/v1/instances/chatty-0/logs",
            params={"tail": "x"},
            headers=gateway.headers,
        ).status_code
        == 422
    )
    assert (
        httpx.get(
            f"{gateway.url}/api/v1/instances/nope-0/logs", headers=gateway.headers
        ).status_code
        == 404
    )
    from mcpctl.cli.main import main

    monkeypatch.setenv("MCPCTL_SERVER", gateway.url)
    monkeypatch.setenv("MCPCTL_TOKEN", gateway.token)
    with pytest.raises(SystemExit) as exited:
        main(["logs", "chatty", "--tail", "5"])
        raise SystemExit(0)
    assert exited.value.code == 0
    assert "hello-from-stderr" in capsys.readouterr().out
    httpx.delete(f"{gateway.url}/api/v1/servers/chatty", headers=gateway.headers)
