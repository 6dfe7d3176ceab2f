"""The CLI against a running mcpd at its edges: stored text is printed as it is (never read as
Rich markup or emoji codes), and a huge history window is refused by name."""

from __future__ import annotations

import httpx
import pytest
import yaml

from tests.e2e.conftest import Mcpd, Run

# Markup that Rich would style, link, turn into an emoji, or refuse ("[/]" closes nothing).
MARKUP = "[bold red]alert[/] [link=https://evil.example]click[/link] :warning: [/]"


@pytest.fixture
def api(mcpd: Mcpd) -> httpx.Client:
    return httpx.Client(base_url=mcpd.url, headers={"Authorization": f"Bearer {mcpd.token}"})


def put(api: httpx.Client, path: str, doc: dict[str, object]) -> None:
    response = api.put(path, json=doc)
    assert response.status_code in (200, 201), response.text


def test_describe_prints_stored_text_literally(run: Run, api: httpx.Client) -> None:
    spec = {"command": "uvx", "replicas": 0, "description": MARKUP, "labels": {"a": "b"}}
    put(api, "/api/v1/servers/marked", {"metadata": {"name": "marked"}, "spec": spec})
    out, _ = run("describe", "server", "marked")
    assert f"Description:   {MARKUP}\n" in out
    assert "Instances:" in out

    project = {"metadata": {"name": "marked"}, "spec": {"description": MARKUP}}
    put(api, "/api/v1/projects/marked", project)
    out, _ = run("describe", "project", "marked")
    assert yaml.safe_load(out)["spec"]["description"] == MARKUP


def test_tables_print_stored_text_literally(run: Run, api: httpx.Client) -> None:
    template = {"description": "[red]x[/] :warning: [/]", "server": {"command": "uvx"}}
    put(api, "/api/v1/templates/marked", {"metadata": {"name": "marked"}, "spec": template})
    out, _ = run("get", "templates")
    assert "[red]x[/] :warning: [/]" in out


def test_history_refuses_a_huge_window_by_name(run: Run) -> None:
    _, err = run("history", "--window", "99999999999999d", code=1)
    assert "window: at most 3650d" in err
    assert "HTTP 422" in err
