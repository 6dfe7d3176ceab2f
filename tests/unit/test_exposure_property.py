"""For any project policy and any tools its servers offer, `tools/list` shows exactly what a
`tools/call` can reach: every listed name resolves to the one tool it was listed for, no name
is listed twice, and no other name reaches a tool (mcpctl/gateway/exposure.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, note, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mcpctl.gateway.exposure import SEPARATOR, Exposure
from mcpctl.models.exposure import AccessRule, ServerExposure, View

SERVERS = ["a", "b", "c-1"]
# Few names, so that renames, globs and tools run into each other often; with a name that
# contains the separator and an empty one (which no call could give back).
NAMES = ["echo", "pid", "meta", "say", "get_x", "get_y", "x__y", ""]
TARGETS = ["echo", "pid", "meta", "say", "get_x", "new"]
TOOL_GLOBS = ["*", "get_*", "?e*", "meta", "pid", "*a*", "x__*"]
NAME_GLOBS = ["*", "a__*", "b__*", "*__say", "*__meta", "*__get_*", "c-1__*", "*__pid"]


def _shaping(draw: st.DrawFn) -> ServerExposure | None:
    if draw(st.booleans()):
        return None
    tools = {
        "allow": draw(st.lists(st.sampled_from(TOOL_GLOBS), max_size=2)),
        "deny": draw(st.lists(st.sampled_from(TOOL_GLOBS), max_size=2)),
        "rename": draw(st.dictionaries(st.sampled_from(NAMES), st.sampled_from(TARGETS))),
        "descriptions": {"say": "said"},
    }
    try:
        return ServerExposure.model_validate({"tools": tools})
    except ValidationError:  # what validation refuses never reaches a gateway
        return None


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Exposure, list[str], dict[str, list[str]]]:
    servers = draw(st.lists(st.sampled_from(SERVERS), min_size=1, unique=True))
    tools = {s: draw(st.lists(st.sampled_from(NAMES), unique=True)) for s in servers}
    expose = {s: shaping for s in servers if (shaping := _shaping(draw)) is not None}
    rules = draw(
        st.none()
        | st.lists(
            st.lists(st.sampled_from(NAME_GLOBS), max_size=3).map(
                lambda globs: AccessRule(members=["*"], tools=globs)
            ),
            max_size=2,
        )
    )
    view = draw(
        st.none()
        | st.lists(st.sampled_from(NAME_GLOBS), min_size=1, max_size=3).map(
            lambda globs: View(name="lite", tools=globs)
        )
    )
    return Exposure(expose, rules, view), servers, tools


@settings(max_examples=500, deadline=None)
@given(worlds())
def test_what_is_listed_is_exactly_what_can_be_called(
    world: tuple[Exposure, list[str], dict[str, list[str]]],
) -> None:
    exposure, servers, tools = world
    note(f"{exposure!r} {servers} {tools}")
    listed: dict[str, tuple[str, str]] = {}
    for server in servers:
        for name in tools[server]:
            shown: dict[str, Any] | None = exposure.tool(server, {"name": name})
            if shown is None:
                continue
            assert shown["name"] not in listed, f"{shown['name']} listed twice"
            listed[shown["name"]] = (server, name)
    for name, tool in listed.items():
        assert exposure.tool_source(name, servers) == tool  # the one tool it was listed for
    # Any name a client could send: each server's (and an unknown server's) with every name
    # and new name in play, and the listed ones.
    candidates = set(listed) | {
        f"{server}{SEPARATOR}{name}" for server in [*SERVERS, "zz"] for name in NAMES + TARGETS
    }
    reachable = set()
    for name in candidates:
        source = exposure.tool_source(name, servers)
        if source is not None and source[1] in tools[source[0]]:
            reachable.add(name)
    assert reachable == set(listed)
