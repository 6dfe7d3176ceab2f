"""A client pointed at the wrong MCP path hears where the endpoints are (issue 20).

A newcomer's first try POSTed to `/mcp` and got a bare `{"message": "Not Found"}`, which MCP
clients show as an HTTP error with nothing to go on. Now it is a JSON-RPC error naming the
endpoints, on every method and path under /mcp that is not an endpoint.
"""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}


@pytest.mark.parametrize("path", ["/mcp", "/mcp/", "/mcp/sse", "/mcp/servers/", "/mcp/x/y/z"])
def test_a_path_under_mcp_that_is_no_endpoint_names_the_endpoints(
    api: TestClient, path: str
) -> None:
    for answer in (api.post(path, json=INIT), api.get(path), api.delete(path)):
        assert answer.status_code == 404, (path, answer.text)
        error = answer.json()["error"]
        assert answer.json()["jsonrpc"] == "2.0" and error["code"] == -32600
        assert "/mcp/servers/<name>" in error["message"]
        assert "/mcp/projects/<name>" in error["message"]


def test_the_endpoints_themselves_are_unchanged(api: TestClient) -> None:
    answer = api.post("/mcp/servers/nothing-here", json=INIT)
    assert answer.status_code == 404 and "no MCP endpoint" not in answer.text
