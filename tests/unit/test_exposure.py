"""A project's exposure and access rules for one caller (mcpctl/gateway/exposure.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from mcpctl.gateway.exposure import Exposure
from mcpctl.models.exposure import AccessRule, ServerExposure, View
from mcpctl.models.project import ProjectSpec

SERVERS = ["github", "time"]
EXPOSE = {
    "github": ServerExposure.model_validate(
        {
            "tools": {
                "allow": ["get_*", "list_*", "search_*"],
                "deny": ["*_secret"],
                "rename": {"search_repositories": "search"},
                "descriptions": {"search": "Search the team's repositories"},
            },
            "prompts": {"deny": ["internal-*"]},
            "resources": {"allow": ["repo://team/*"]},
        }
    )
}
ACCESS = [
    AccessRule.model_validate({"members": ["group:readers"], "tools": ["*__get_*", "*__list_*"]}),
    AccessRule.model_validate(
        {"members": ["Alice@Example.com"], "tools": ["*"], "prompts": ["*"], "resources": ["*"]}
    ),
]
SPEC = SimpleNamespace(expose=EXPOSE, access=ACCESS)


def listed(exposure: Exposure, server: str, names: list[str]) -> list[str]:
    shown = [exposure.tool(server, {"name": n, "description": n}) for n in names]
    return [tool["name"] for tool in shown if tool is not None]


GITHUB = ["get_issue", "list_repos", "search_repositories", "delete_repo", "get_secret"]


def test_the_exposure_shapes_what_everyone_sees() -> None:
    alice = Exposure.of(SPEC, "alice@example.com")
    assert listed(alice, "github", GITHUB) == [
        "github__get_issue",
        "github__list_repos",
        "github__search",
    ]
    assert listed(alice, "time", ["now"]) == ["time__now"]  # no exposure: all of it
    search = alice.tool("github", {"name": "search_repositories", "description": "x"})
    assert search == {"name": "github__search", "description": "Search the team's repositories"}
    assert alice.tool_source("github__search", SERVERS) == ("github", "search_repositories")
    for hidden in ("github__search_repositories", "github__delete_repo", "github__get_secret"):
        assert alice.tool_source(hidden, SERVERS) is None  # renamed away, not allowed, denied
    assert alice.tool_source("gitlab__get_issue", SERVERS) is None
    assert not alice.prompt("github", "internal-notes") and alice.prompt("github", "review")
    assert alice.resource("github", "repo://team/api") and not alice.resource("github", "repo://x")


def test_access_rules_bind_members_by_email_and_group() -> None:
    reader = Exposure.of(SPEC, "bob@example.com", groups=("readers",))
    assert listed(reader, "github", GITHUB) == ["github__get_issue", "github__list_repos"]
    assert listed(reader, "time", ["now", "list_zones"]) == ["time__list_zones"]
    assert reader.tool_source("github__search", SERVERS) is None
    assert not reader.prompt(None, "greet") and not reader.resource("github", "repo://team/a")
    nobody = Exposure.of(SPEC, "carol@example.com")  # a member no rule names
    assert (
        listed(nobody, "time", ["now"]) == [] and nobody.tool_source("time__now", SERVERS) is None
    )
    owner = Exposure.of(SPEC, "carol@example.com", unbound=True)  # the owner, or an admin
    assert listed(owner, "github", GITHUB) == listed(
        Exposure.of(SPEC, "alice@example.com"), "github", GITHUB
    )
    everyone = SimpleNamespace(expose={}, access=[AccessRule(members=["*"], tools=["time__*"])])
    assert listed(Exposure.of(everyone, "dave@example.com"), "time", ["now"]) == ["time__now"]


def test_a_view_serves_only_its_tools() -> None:
    view = View(name="lite", tools=["github__search", "time__*"])
    lite = Exposure.of(SPEC, "alice@example.com", view=view)
    assert listed(lite, "github", GITHUB) == ["github__search"]
    assert lite.tool_source("github__get_issue", SERVERS) is None
    assert not lite.prompt(None, "greet") and not lite.resource("github", "repo://team/a")


@pytest.mark.parametrize(
    ("rename", "field", "message"),
    [
        ({"a": "x", "b": "x"}, "rename", "'a' and 'b' are both renamed to 'x'"),
        ({"a": "x__y"}, "rename.a", "without '__'"),
        ({"a": ""}, "rename.a", "1-128 characters"),
        ({"echo": "echo"}, "rename", "'echo' is renamed to itself"),
    ],
)
def test_renames_that_would_list_a_name_no_call_reaches_are_refused(
    rename: dict[str, str], field: str, message: str
) -> None:
    spec = {"servers": ["mis"], "expose": {"mis": {"tools": {"rename": rename}}}}
    with pytest.raises(ValidationError) as refused:
        ProjectSpec.model_validate(spec)
    [error] = refused.value.errors()
    assert ".".join(map(str, error["loc"])) == f"expose.mis.tools.{field}"
    assert message in error["msg"]


def test_a_rename_onto_a_tool_of_the_server_takes_that_name_whole() -> None:
    """`rename: {pid: meta}` where the server has a `meta` too: `mis__meta` is listed once and
    is `pid`; the server's own `meta` is hidden and cannot be called; `mis__pid` is gone."""
    spec = SimpleNamespace(
        expose={"mis": ServerExposure.model_validate({"tools": {"rename": {"pid": "meta"}}})},
        access=[],
    )
    exposure = Exposure.of(spec, "alice@example.com")
    assert listed(exposure, "mis", ["echo", "pid", "meta"]) == ["mis__echo", "mis__meta"]
    assert exposure.tool_source("mis__meta", ["mis"]) == ("mis", "pid")
    assert exposure.tool_source("mis__pid", ["mis"]) is None
    swapped = ServerExposure.model_validate({"tools": {"rename": {"pid": "meta", "meta": "pid"}}})
    swap = Exposure({"mis": swapped})
    assert listed(swap, "mis", ["pid", "meta"]) == ["mis__meta", "mis__pid"]
    assert swap.tool_source("mis__pid", ["mis"]) == ("mis", "meta")


def test_a_tool_without_a_name_a_call_could_give_back_is_not_listed() -> None:
    everything = Exposure()
    assert everything.tool("mis", {"name": ""}) is None
    assert everything.tool("mis", {"name": 7}) is None
    assert everything.tool("mis", {}) is None


def test_rule_members_are_normalised_and_checked() -> None:
    rule = AccessRule.model_validate({"members": [" Bob@Example.COM ", "GROUP:ops", "*"]})
    assert rule.members == ["bob@example.com", "group:ops", "*"]
    with pytest.raises(ValidationError):
        AccessRule.model_validate({"members": ["not an email"]})
    with pytest.raises(ValidationError):
        AccessRule.model_validate({"members": []})
