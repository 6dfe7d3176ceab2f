"""A STDIO MCP server that repeats whatever it is sent (standard library only), in its results and
in its error messages, as careless servers do: what mcpd stores of its answers must never hold
what a client sent in arguments, URIs' queries or ids.

Started the way users start servers: `command: python`, `args: [this file]`.
`tools/call` of `echo` answers the params as text; `fail` answers a tool error echoing them;
`resources/read`, `resources/subscribe`, `prompts/get`, `completion/complete` and anything else
answer a JSON-RPC error whose message and data echo the params.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def answer(request: dict[str, Any]) -> dict[str, Any]:
    method, params = request.get("method"), request.get("params") or {}
    echoed = json.dumps(params)
    if method == "initialize":
        return {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {
                "tools": {},
                "resources": {"subscribe": True},
                "prompts": {},
                "completions": {},
            },
            "serverInfo": {"name": "echoing", "version": "1"},
        }
    if method == "ping":
        return {}
    if method == "tools/list":
        tools = [{"name": n, "inputSchema": {"type": "object"}} for n in ("echo", "fail")]
        return {"tools": tools}
    if method == "tools/call":
        failed = params.get("name") == "fail"
        return {"content": [{"type": "text", "text": echoed}], "isError": failed}
    if method == "prompts/list":
        return {"prompts": [{"name": "greet"}]}
    if method == "resources/list":
        return {"resources": [{"uri": "mem://doc", "name": "doc"}]}
    if method == "resources/templates/list":
        return {"resourceTemplates": [{"uriTemplate": "mem://docs/{name}", "name": "docs"}]}
    raise LookupError(f"cannot {method} {echoed}")


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if "id" not in request or "method" not in request:
            continue  # a notification, or an answer
        try:
            send({"jsonrpc": "2.0", "id": request["id"], "result": answer(request)})
        except LookupError as error:
            failed = {"code": -32602, "message": str(error), "data": request.get("params")}
            send({"jsonrpc": "2.0", "id": request["id"], "error": failed})


if __name__ == "__main__":
    main()
