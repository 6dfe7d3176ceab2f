"""Which resource template a URI belongs to (mcpctl/mcp/uri_templates.py): the RFC 6570
level-3 forms MCP servers use, a template matched against itself (a completion's
`ref/resource`), and what the SDK's matcher cannot parse."""

from __future__ import annotations

import pytest

from mcpctl.mcp.uri_templates import MAX_TEMPLATE, matches

FORMS = {  # template: (expansions that match, URIs that do not)
    "file:///docs/{name}": (
        ["file:///docs/readme.md", "file:///docs/hello%20world"],
        ["file:///docs/a/b", "file:///docs/x?y", "file:///other/readme.md"],
    ),
    "file:///{+path}": (
        ["file:///a", "file:///a/b/c.txt", "file:///a,b;c=d"],
        ["files:///a", "http:///a"],
    ),
    "search://docs{?q,lang}": (
        [
            "search://docs",
            "search://docs?q=mcp",
            "search://docs?lang=en&q=mcp",  # any order
            "search://docs?q=mcp&lang=en&utm=x",  # others ignored
        ],
        ["search://doc?q=1", "search://docs/more?q=1"],
    ),
    "logs://{service}{?since}{&level}": (
        ["logs://api", "logs://api?since=5m", "logs://api?since=5m&level=error"],
        ["logs://api/v1?since=5m", "log://api"],
    ),
    "repo://{owner}{/name,branch}": (
        ["repo://alice/tools/main"],
        ["repo://alice/tools", "repo://alice/tools/main/extra"],
    ),
    "doc://guide{#section}": (
        ["doc://guide#intro", "doc://guide#a/b"],
        ["doc://guide/intro", "doc://guides#intro"],
    ),
    "mem://page/{n}.{format}": (
        ["mem://page/1.json"],
        ["mem://page/1", "mem://page/1/x.json"],
    ),
}


@pytest.mark.parametrize("template", FORMS)
def test_a_template_matches_its_expansions_only(template: str) -> None:
    expansions, others = FORMS[template]
    for uri in expansions:
        assert matches(template, uri), uri
    for uri in others:
        assert not matches(template, uri), uri


@pytest.mark.parametrize(
    "template",
    [*FORMS, "a://{x:3}", "a://{a}{b}", "a://{x}{x}", "a://{unclosed", "a://x?fixed=1{&page}"],
)
def test_a_template_matches_itself(template: str) -> None:
    """A completion's `ref/resource` names the template: `{?q}` once did not match itself."""
    assert matches(template, template)


def test_level_4_modifiers_match_as_their_plain_variable() -> None:
    assert matches("a://x/{id:3}", "a://x/abc")
    assert not matches("a://x/{id:3}", "a://x/a/b")
    assert matches("search://x{?tag*}", "search://x?tag=a&tag=b")
    assert matches("files:///{/path*}", "files:////a/b")  # the SDK matches this one itself


def test_what_cannot_be_parsed_matches_only_itself() -> None:
    assert not matches("a://{a}{b}", "a://xy")  # nothing tells where `a` ends
    assert not matches("a://{unclosed", "a://x")


def test_what_is_not_a_template_or_too_long_matches_nothing() -> None:
    assert not matches(None, "a://x")
    assert not matches({"uriTemplate": "a://{x}"}, "a://x")
    long = "a://" + "x" * MAX_TEMPLATE + "{id}"
    assert not matches(long, long) and not matches(long, long.replace("{id}", "1"))
    assert matches("a://{id}", "a://1") and not matches("a://{id}", "a://" + "1" * 70_000)
