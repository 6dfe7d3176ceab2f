"""Validation of documents: each rule names the field it rejects."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from mcpctl.models.kinds import PROMPT, SERVER, TEMPLATE, USER, kind_named
from mcpctl.models.server import Source


def server(**spec: Any) -> dict[str, Any]:
    return {"kind": "Server", "metadata": {"name": "srv"}, "spec": spec}


def error_of(kind: Any, doc: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(ValidationError) as caught:
        kind.parse(doc)
    detail = caught.value.errors()[0]
    return ".".join(str(p) for p in detail["loc"]), detail["msg"]


@pytest.mark.parametrize(
    ("spec", "source"),
    [
        ({"image": "ghcr.io/x/y:1"}, Source.IMAGE),
        ({"image": "ghcr.io/x/y:1", "command": "serve", "args": ["--stdio"]}, Source.IMAGE),
        ({"package": "@modelcontextprotocol/server-everything", "runtime": "node"}, Source.PACKAGE),
        ({"package": "mcp-server-time", "runtime": "python", "args": ["--x"]}, Source.PACKAGE),
        ({"command": "python", "args": ["-m", "server"]}, Source.COMMAND),
        ({"url": "https://mcp.example.com/mcp", "transport": "streamable-http"}, Source.URL),
        ({"command": "srv", "transport": "sse", "port": 8000}, Source.COMMAND),
    ],
)
def test_each_source_is_accepted(spec: dict[str, Any], source: Source) -> None:
    assert SERVER.parse(server(**spec)).spec.source is source


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({}, "spec.image", "exactly one source"),
        ({"image": "a", "package": "b", "runtime": "node"}, "spec.package", "exactly one source"),
        ({"image": "a", "url": "http://x"}, "spec.url", "exactly one source"),
        ({"package": "b", "command": "c", "runtime": "node"}, "spec.command", "cannot be combined"),
        ({"package": "b"}, "spec.runtime", "required with package"),
        ({"command": "c", "runtime": "node"}, "spec.runtime", "only valid with package"),
        ({"package": "b", "runtime": "ruby"}, "spec.runtime", "'node' or 'python'"),
        ({"command": "c", "transport": "sse"}, "spec.port", "port is required"),
        ({"command": "c", "port": 80}, "spec.port", "only valid for HTTP"),
        ({"url": "http://x"}, "spec.transport", "must use sse or streamable-http"),
        ({"url": "http://x", "transport": "sse", "port": 1}, "spec.port", "part of url"),
        ({"url": "ftp://x", "transport": "sse"}, "spec.url", "should match pattern"),
        ({"command": "c", "replicas": -1}, "spec.replicas", "greater than or equal to 0"),
        ({"command": "c", "transport": "sse", "port": 70000}, "spec.port", "less than or equal"),
        ({"command": "c", "env": [{"name": "A"}]}, "spec.env.0.value", "exactly one of value"),
        (
            {
                "command": "c",
                "env": [{"name": "A", "value": "1", "secretRef": {"name": "s", "key": "k"}}],
            },
            "spec.env.0.value",
            "exactly one of value",
        ),
        (
            {"command": "c", "env": [{"name": "A", "secretRef": {"name": "Bad_Name", "key": "k"}}]},
            "spec.env.0.secretRef.name",
            "DNS-1123",
        ),
        (
            {"command": "c", "env": [{"name": "A", "secretRef": {"name": "s", "key": "a b"}}]},
            "spec.env.0.secretRef.key",
            "should match pattern",
        ),
        ({"command": "c", "env": [{"name": "1X", "value": "v"}]}, "spec.env.0.name", "pattern"),
        (
            {"command": "c", "env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
            "spec.env.1.name",
            "duplicate",
        ),
        ({"command": "c", "labels": {"a b": "c"}}, "spec.labels", "label key"),
        (
            {"command": "c", "resources": {"limits": {"cpu": "lots"}}},
            "spec.resources.limits.cpu",
            "quantity",
        ),
        ({"command": "c", "colour": "red"}, "spec.colour", "Extra inputs"),
    ],
)
def test_invalid_server_names_the_field(spec: dict[str, Any], field: str, message: str) -> None:
    located, text = error_of(SERVER, server(**spec))
    assert located == field
    assert message in text


@pytest.mark.parametrize("name", ["UPPER", "under_score", "-lead", "trail-", "a" * 64, ""])
def test_names_must_be_dns_labels(name: str) -> None:
    field, _ = error_of(SERVER, {"metadata": {"name": name}, "spec": {"command": "c"}})
    assert field == "metadata.name"


def test_users_are_named_by_email() -> None:
    assert USER.parse({"metadata": {"name": "a@example.com"}, "spec": {}}).spec.role == "member"
    field, _ = error_of(USER, {"metadata": {"name": "not-an-email"}, "spec": {}})
    assert field == "metadata.name"


def test_prompts_need_a_project() -> None:
    field, _ = error_of(PROMPT, {"metadata": {"name": "p"}, "spec": {"text": "t"}})
    assert field == "metadata.project"


def test_template_renders_into_a_validated_server() -> None:
    doc = {
        "metadata": {"name": "gh"},
        "spec": {
            "parameters": [{"name": "repo"}, {"name": "tag", "required": False, "default": "1"}],
            "server": {"image": "ghcr.io/x/${repo}:${tag}", "replicas": 2},
        },
    }
    template = TEMPLATE.parse(doc).spec
    rendered = template.render({"repo": "tools"})
    assert rendered.image == "ghcr.io/x/tools:1"
    assert rendered.replicas == 2
    with pytest.raises(ValidationError, match=r"parameters\.repo"):
        template.render({})
    with pytest.raises(ValidationError, match=r"parameters\.nope"):
        template.render({"repo": "a", "nope": "b"})


def test_template_refuses_undeclared_placeholders() -> None:
    doc = {"metadata": {"name": "t"}, "spec": {"server": {"image": "${missing}"}}}
    field, message = error_of(TEMPLATE, doc)
    assert (field, message) == ("spec.server", "undeclared parameters: missing")


def test_kinds_are_found_by_any_spelling() -> None:
    assert kind_named("servers") is kind_named("Server") is kind_named("server") is SERVER
    with pytest.raises(KeyError, match="unknown kind"):
        kind_named("pods")
