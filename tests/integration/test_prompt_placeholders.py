"""A prompt's `{name}` placeholders are its arguments (issue 20).

Before: `--text "Say hello to {name}"` without `--argument name` listed no arguments, and
`prompts/get` returned the literal `{name}`, though the help said `{arg}` marks arguments.
"""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from mcpctl.models.prompt import PromptSpec
from tests.helpers.jsonrpc import ACCEPT, request


def rpc(api: TestClient, session: str | None, method: str, **params: Any) -> dict[str, Any]:
    headers = {**ACCEPT, **({"Mcp-Session-Id": session} if session else {})}
    answer = api.post("/mcp/projects/greet", json=request(1, method, params), headers=headers)
    assert answer.status_code == 200, answer.text
    return {"session": answer.headers.get("mcp-session-id"), **answer.json()}


def test_placeholders_are_declared_in_order_and_declared_ones_keep_their_flags() -> None:
    spec = PromptSpec.model_validate(
        {
            "text": "Hi {name} from {place}, {name}! {}",
            "arguments": [{"name": "place", "required": True}],
        }
    )
    assert [(a.name, a.required) for a in spec.arguments] == [("place", True), ("name", False)]
    again = PromptSpec.model_validate(spec.model_dump())  # what `get -o yaml | apply` sends back
    assert again == spec


def test_a_project_prompt_lists_and_fills_its_placeholders(api: TestClient) -> None:
    project = {"metadata": {"name": "greet"}, "spec": {}}
    assert api.post("/api/v1/projects", json=project).status_code == 201
    prompt = {
        "metadata": {"name": "hello", "project": "greet"},
        "spec": {"text": "Say hello to {name}"},
    }
    created = api.post("/api/v1/projects/greet/prompts", json=prompt)
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["arguments"] == [
        {"name": "name", "description": "", "required": False}
    ]
    init = {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    }
    session = rpc(api, None, "initialize", **init)["session"]
    listed = rpc(api, session, "prompts/list")["result"]["prompts"]
    assert [(p["name"], [a["name"] for a in p.get("arguments", [])]) for p in listed] == [
        ("hello", ["name"])
    ]
    got = rpc(api, session, "prompts/get", name="hello", arguments={"name": "Ada"})
    assert got["result"]["messages"][0]["content"]["text"] == "Say hello to Ada"
