"""A project's aggregated lists (mcpctl/gateway/targets.py) when a name comes twice: a server
listing a tool twice, two servers listing one URI or template. Each name a client gives back
is listed once, the first definition in server order, and what uses it (a call, a read, a
completion) goes where that listing said."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from types import SimpleNamespace
from typing import Any, cast

import pytest

from mcpctl.actors.runtime import Runtime
from mcpctl.gateway.exposure import Exposure
from mcpctl.gateway.sessions import ClientSession
from mcpctl.gateway.targets import ProjectTarget
from mcpctl.mcp.caller import Caller
from mcpctl.models.exposure import ServerExposure

TEMPLATE = "notes://{id}{?q}"
LISTS = {  # server -> method -> items, in the order the server lists them
    "a": {
        "tools/list": [
            {"name": "echo", "description": "first"},
            {"name": "echo", "description": "second"},
            {"name": "pid", "description": "pid"},
        ],
        "prompts/list": [{"name": "again"}, {"name": "again", "description": "later"}],
        "resources/list": [{"uri": "mem://shared", "name": "a-shared"}],
        "resources/templates/list": [{"uriTemplate": TEMPLATE, "name": "a-notes"}],
    },
    "b": {
        "tools/list": [{"name": "echo", "description": "b's"}],
        "prompts/list": [{"name": "again"}],
        "resources/list": [
            {"uri": "mem://shared", "name": "b-shared"},
            {"uri": "mem://b", "name": "b-own"},
            {"uri": "mem://b", "name": "b-own-again"},
        ],
        "resources/templates/list": [{"uriTemplate": TEMPLATE, "name": "b-notes"}],
    },
}
FIELDS = {
    "tools/list": "tools",
    "prompts/list": "prompts",
    "resources/list": "resources",
    "resources/templates/list": "resourceTemplates",
}


class Members:
    """The runtime as a project sees it: each member answers its lists; what else it is sent
    is recorded and answered with the server's name."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def exchange(
        self, server: str, caller: Caller, message: dict[str, Any]
    ) -> AsyncGenerator[dict[str, Any], None]:
        method = message["method"]
        if method in FIELDS:
            result: dict[str, Any] = {FIELDS[method]: LISTS[server][method]}
        else:
            self.sent.append((server, message))
            result = {"server": server}
        yield {"jsonrpc": "2.0", "id": message["id"], "result": result}


def project(members: Members, exposure: Exposure | None = None) -> ProjectTarget:
    async def load() -> tuple[list[str], list[Any]]:
        return ["a", "b"], []

    return ProjectTarget(cast(Runtime, members), "team", load, exposure=exposure)


def session() -> ClientSession:
    return ClientSession("s", "projects/team", "alice@example.com", "2025-06-18")


async def ask(target: ProjectTarget, method: str, **params: Any) -> dict[str, Any]:
    message = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    answers = [m async for m in target.handle(session(), message)]
    return answers[-1]


async def test_each_name_is_listed_once_with_its_first_definition(
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = project(Members())
    with caplog.at_level(logging.WARNING, "mcpctl.gateway.targets"):
        tools = (await ask(target, "tools/list"))["result"]["tools"]
    assert [(t["name"], t["description"]) for t in tools] == [
        ("a__echo", "first"),
        ("a__pid", "pid"),
        ("b__echo", "b's"),
    ]
    assert "tools/list left out 1 later definition(s)" in caplog.text
    assert "'a__echo' of a" in caplog.text
    prompts = (await ask(target, "prompts/list"))["result"]["prompts"]
    assert [(p["name"], p.get("description")) for p in prompts] == [
        ("a__again", None),
        ("b__again", None),
    ]
    resources = (await ask(target, "resources/list"))["result"]["resources"]
    assert [(r["uri"], r["name"]) for r in resources] == [
        ("mem://shared", "a__a-shared"),
        ("mem://b", "b__b-own"),
    ]
    templates = (await ask(target, "resources/templates/list"))["result"]["resourceTemplates"]
    assert [t["name"] for t in templates] == ["a__a-notes"]


async def test_what_a_listed_name_is_used_for_goes_where_the_listing_said() -> None:
    members = Members()
    target = project(members)
    assert (await ask(target, "tools/call", name="a__echo"))["result"]["server"] == "a"
    assert members.sent[-1][1]["params"]["name"] == "echo"  # the server picks among its own
    await ask(target, "resources/list")
    for uri in ("mem://shared", "notes://7?q=x", "notes://7"):
        read = await ask(target, "resources/read", uri=uri)
        assert read["result"]["server"] == "a", uri
    ref = {"type": "ref/resource", "uri": TEMPLATE}
    completed = await ask(target, "completion/complete", ref=ref, argument={"name": "id"})
    assert completed["result"]["server"] == "a"


async def test_a_uri_found_when_read_goes_to_the_first_server_listing_it() -> None:
    """Not learnt from a list first: found on the read, as a list would show it."""
    members = Members()
    read = await ask(project(members), "resources/read", uri="mem://shared")
    assert read["result"]["server"] == "a"
    # a's resources hidden by the project's exposure: b's is the one listed, and read.
    expose = {"a": ServerExposure.model_validate({"resources": {"deny": ["mem://*"]}})}
    exposure = Exposure.of(SimpleNamespace(expose=expose, access=None), "alice@example.com")
    hidden = project(members, exposure)
    listed = (await ask(hidden, "resources/list"))["result"]["resources"]
    assert [r["name"] for r in listed] == ["b__b-shared", "b__b-own"]
    fresh = project(members, exposure)  # nothing learnt
    assert (await ask(fresh, "resources/read", uri="mem://shared"))["result"]["server"] == "b"


async def test_a_template_with_a_query_part_is_found_for_a_completion() -> None:
    """`{?q}` did not match itself: the completion was an unknown resource."""
    members = Members()
    ref = {"type": "ref/resource", "uri": TEMPLATE}
    answer = await ask(project(members), "completion/complete", ref=ref, argument={"name": "q"})
    assert answer["result"]["server"] == "a"
    unknown = {"type": "ref/resource", "uri": "other://{id}{?q}"}
    refused = await ask(project(members), "completion/complete", ref=unknown, argument={})
    assert "unknown resource" in refused["error"]["message"]
