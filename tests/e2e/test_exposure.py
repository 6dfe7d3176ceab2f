"""Per-tool exposure and access in a project, through mcpd with the official SDK client, on
tests/servers/misbehaving.py (which counts what really ran) and the published
`@modelcontextprotocol/server-everything`: a caller lists exactly what it may call, and
anything else is an unknown name that never reaches the server."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError
from mcp.types import ResourceTemplateReference

from mcpctl.models.project import ProjectSpec
from tests.e2e.gateway import Gateway, start_gateway
from tests.helpers.mcpd import add_member, sdk_client, wait_running
from tests.helpers.waiting import until
from tests.helpers.world import EVERYTHING, MISBEHAVING

POLICY = {
    "expose": {
        "misbehaving": {
            "tools": {
                "allow": ["echo", "append", "pid", "meta"],
                "deny": ["append"],
                "rename": {"echo": "say"},
                "descriptions": {"say": "Say it back"},
            }
        },
        "everything": {
            "prompts": {"deny": ["args-*"]},
            "resources": {"allow": ["demo://resource/static/*"]},
        },
    },
    "access": [
        {"members": ["alice@example.com"], "tools": ["*"], "prompts": ["*"], "resources": ["*"]},
        {"members": ["bob@example.com"], "tools": ["*__say"]},
    ],
    "views": [{"name": "lite", "tools": ["misbehaving__say", "everything__get-sum"]}],
}


@dataclass
class World:
    gateway: Gateway
    state: Path
    tokens: dict[str, str]
    api: httpx.Client


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("exposure")
    state = workdir / "state"
    state.mkdir()
    gateway = start_gateway(workdir, "exposure", hosts=1)
    api = httpx.Client(base_url=gateway.url, headers=gateway.headers, timeout=30)
    misbehaving = {"command": sys.executable, "args": [str(MISBEHAVING), str(state)]}
    for name, spec in (("misbehaving", misbehaving), ("everything", EVERYTHING)):
        assert api.post("/api/v1/servers", json={"metadata": {"name": name}, "spec": spec})
    tokens = {"admin": gateway.token}
    for user in ("alice", "bob"):
        tokens[user] = add_member(api, user)
    spec = {
        "servers": ["misbehaving", "everything"],
        "members": ["alice@example.com", "bob@example.com"],
        **POLICY,
    }
    created = api.post("/api/v1/projects", json={"metadata": {"name": "team"}, "spec": spec})
    assert created.status_code == 201, created.text
    wait_running(gateway, "misbehaving")
    wait_running(gateway, "everything")
    yield World(gateway, state, tokens, api)
    api.close()
    gateway.stop()


@asynccontextmanager
async def connect(world: World, user: str, mode: str, path: str = "/mcp/projects/team"):
    async with sdk_client(f"{world.gateway.url}{path}", world.tokens[user], mode) as client:
        yield client


async def names(client: Client) -> dict[str, list[str]]:
    return {
        "tools": sorted(t.name for t in (await client.list_tools()).tools),
        "prompts": sorted(p.name for p in (await client.list_prompts()).prompts),
        "resources": sorted(r.uri for r in (await client.list_resources()).resources),
    }


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_member_lists_and_calls_exactly_what_is_exposed_to_them(
    world: World, mode: str
) -> None:
    async with connect(world, "alice", mode) as alice:
        listed = await names(alice)
        ours = [t for t in listed["tools"] if t.startswith("misbehaving__")]
        assert ours == ["misbehaving__meta", "misbehaving__pid", "misbehaving__say"]
        assert "everything__echo" in listed["tools"]  # no exposure set: all of it
        tools = {t.name: t for t in (await alice.list_tools()).tools}
        assert tools["misbehaving__say"].description == "Say it back"
        assert not [p for p in listed["prompts"] if p.startswith("everything__args-")]
        demo = [u for u in listed["resources"] if u.startswith("demo://")]  # everything's
        assert demo and all(u.startswith("demo://resource/static/") for u in demo)
        said = await alice.call_tool("misbehaving__say", {"text": "hi"})
        assert said.content[0].text == "echo: hi"
        for hidden in ("misbehaving__echo", "misbehaving__append", "misbehaving__nope"):
            with pytest.raises(MCPError, match=f"unknown name '{hidden}' in project team"):
                await alice.call_tool(hidden, {"text": "x"})
        with pytest.raises(MCPError, match="unknown resource"):
            await alice.read_resource("demo://resource/dynamic/text/1")
    assert not (world.state / "appended").exists()  # nothing hidden ever ran


async def test_access_rules_narrow_a_member_to_their_tools(world: World) -> None:
    async with connect(world, "bob", "legacy") as bob:
        assert await names(bob) == {"tools": ["misbehaving__say"], "prompts": [], "resources": []}
        assert (await bob.call_tool("misbehaving__say", {"text": "b"})).content[0].text == "echo: b"
        with pytest.raises(MCPError, match="unknown name 'everything__echo'"):
            await bob.call_tool("everything__echo", {"message": "x"})
        with pytest.raises(MCPError, match="unknown name"):
            await bob.get_prompt("everything__simple-prompt")
    async with connect(world, "admin", "legacy") as admin:  # not bound by access rules
        assert "everything__echo" in (await names(admin))["tools"]
    # Each refusal is in the audit trail as denied (written in batches: wait for it).
    query = {"user": "bob@example.com", "outcome": "denied"}
    rows = until(
        lambda: world.api.get("/api/v1/audit", params=query).json()["items"],
        interval=0.1,
        what="no denied record for bob",
    )
    denied = {(row["method"], row["name"]) for row in rows}
    assert ("tools/call", "everything__echo") in denied


async def test_a_view_serves_a_smaller_set_of_tools(world: World) -> None:
    async with connect(world, "alice", "2026-07-28", "/mcp/projects/team/views/lite") as lite:
        assert await names(lite) == {
            "tools": ["everything__get-sum", "misbehaving__say"],
            "prompts": [],
            "resources": [],
        }
        total = await lite.call_tool("everything__get-sum", {"a": 1, "b": 2})
        assert "3" in total.content[0].text
    async with connect(world, "bob", "legacy", "/mcp/projects/team/views/lite") as lite:
        assert (await names(lite))["tools"] == ["misbehaving__say"]  # the view and his rules
    missing = httpx.post(
        f"{world.gateway.url}/mcp/projects/team/views/nope",
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers=world.gateway.headers,
    )
    assert missing.status_code == 404 and "view 'team/views/nope' not found" in missing.text


def test_the_policy_is_part_of_the_project(world: World) -> None:
    shown = world.api.get("/api/v1/projects/team").json()["spec"]

    def policy(spec: dict[str, Any]) -> dict[str, Any]:
        parsed = ProjectSpec.model_validate({**spec, "servers": ["misbehaving", "everything"]})
        return parsed.model_dump(include={"expose", "access", "views"})

    assert policy(shown) == policy(POLICY)  # kept as applied (defaults shown)
    again = world.api.put(
        "/api/v1/projects/team", json={"metadata": {"name": "team"}, "spec": shown}
    )
    assert again.headers["Mcpctl-Outcome"] == "unchanged"
    bad: dict[str, Any] = {**shown, "expose": {"time": {}}}
    refused = world.api.put(
        "/api/v1/projects/team", json={"metadata": {"name": "team"}, "spec": bad}
    )
    assert refused.status_code == 422 and "expose.time" in refused.text


def test_the_policy_is_kept_in_backups(world: World) -> None:
    backup = world.api.get("/api/v1/backup").json()
    [team] = [
        i for i in backup["items"] if i["kind"] == "Project" and i["metadata"]["name"] == "team"
    ]
    assert team["spec"]["access"][1] == {
        "members": ["bob@example.com"],
        "tools": ["*__say"],
        "prompts": [],
        "resources": [],
    }
    restored = world.api.post("/api/v1/restore", json=backup)
    assert restored.status_code == 200, restored.text
    assert restored.json()["restored"]["projects"] == {"unchanged": 1}


# Renames and completions, each on a project of its own (removed after: the backup test above
# counts the module's projects).


@contextmanager
def project(world: World, name: str, spec: dict[str, Any]) -> Iterator[None]:
    created = world.api.put(
        f"/api/v1/projects/{name}", json={"metadata": {"name": name}, "spec": spec}
    )
    assert created.status_code == 201, created.text
    try:
        yield
    finally:
        world.api.delete(f"/api/v1/projects/{name}")


def test_a_rename_to_itself_is_refused_naming_the_field(world: World) -> None:
    spec = {
        "servers": ["misbehaving"],
        "expose": {"misbehaving": {"tools": {"rename": {"echo": "echo"}}}},
    }
    refused = world.api.put(
        "/api/v1/projects/same", json={"metadata": {"name": "same"}, "spec": spec}
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "spec.expose.misbehaving.tools.rename"
    assert "'echo' is renamed to itself" in refused.json()["message"]
    assert world.api.get("/api/v1/projects/same").status_code == 404


async def test_a_rename_onto_a_tool_of_the_server_takes_that_name(world: World) -> None:
    """`rename: {pid: meta}` on a server that has a `meta`: `misbehaving__meta` is listed once
    and runs `pid`; the server's own `meta` is neither listed nor callable, nor is the old
    name `misbehaving__pid`."""
    spec = {
        "servers": ["misbehaving"],
        "expose": {"misbehaving": {"tools": {"rename": {"pid": "meta"}}}},
    }
    with project(world, "shadow", spec):
        async with connect(world, "admin", "legacy", "/mcp/projects/shadow") as admin:
            tools = [t.name for t in (await admin.list_tools()).tools]
            assert tools.count("misbehaving__meta") == 1 and "misbehaving__pid" not in tools
            ran = await admin.call_tool("misbehaving__meta", {})
            assert re.fullmatch(r"[0-9]+", ran.content[0].text), ran  # pid's answer, a pid
            with pytest.raises(MCPError, match="unknown name 'misbehaving__pid'"):
                await admin.call_tool("misbehaving__pid", {})


TEXT_TEMPLATE = "demo://resource/dynamic/text/{resourceId}"  # everything's, with completions


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_completion_for_a_resource_template_goes_to_its_server(
    world: World, mode: str
) -> None:
    template = ResourceTemplateReference(type="ref/resource", uri=TEXT_TEMPLATE)
    argument = {"name": "resourceId", "value": "7"}
    spec = {"servers": ["misbehaving", "everything"]}
    with project(world, f"complete-{mode[:4]}", spec):
        path = f"/mcp/projects/complete-{mode[:4]}"
        async with connect(world, "admin", mode, path) as admin:
            completed = await admin.complete(template, argument)
            assert completed.completion.values == ["7"]
            unknown = ResourceTemplateReference(type="ref/resource", uri="demo://nope/{id}")
            with pytest.raises(MCPError, match=re.escape("unknown resource 'demo://nope/{id}'")):
                await admin.complete(unknown, argument)
    # In team, everything's resources are only demo://resource/static/*: the template is
    # hidden from the completion as it is from resources/read, for alice and the admin alike.
    for user in ("alice", "admin"):
        async with connect(world, user, mode) as client:
            with pytest.raises(MCPError, match="unknown resource"):
                await client.complete(template, argument)


async def test_a_name_a_server_lists_twice_is_listed_once_its_first_definition(
    world: World,
) -> None:
    """A broken server lists `echo` twice (--duplicate-tool, the second "echo, listed again"),
    and misbehaving's prompts come twice (its second page repeats its cursor): the project
    lists each name once, with the first definition, and a call of it works."""
    spec = {
        "command": sys.executable,
        "args": [str(MISBEHAVING), str(world.state), "--duplicate-tool"],
    }
    created = world.api.post("/api/v1/servers", json={"metadata": {"name": "twice"}, "spec": spec})
    assert created.status_code == 201, created.text
    try:
        wait_running(world.gateway, "twice")
        with project(world, "dup", {"servers": ["twice", "misbehaving"]}):
            async with connect(world, "admin", "legacy", "/mcp/projects/dup") as admin:
                tools = (await admin.list_tools()).tools
                names = [t.name for t in tools]
                assert len(names) == len(set(names)), names
                [echo] = [t for t in tools if t.name == "twice__echo"]
                assert echo.description == "echo"  # the first definition, not "listed again"
                assert "misbehaving__echo" in names  # another server's echo is another name
                said = await admin.call_tool("twice__echo", {"text": "once"})
                assert said.content[0].text == "echo: once"
                prompts = [p.name for p in (await admin.list_prompts()).prompts]
                assert sorted(prompts) == ["misbehaving__again", "twice__again"]
    finally:
        world.api.delete("/api/v1/servers/twice")
