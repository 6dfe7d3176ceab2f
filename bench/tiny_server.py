"""A tiny STDIO MCP server (stdlib only, ~10 MiB) for fleet benchmarks: initialize, ping,
tools/list and an `echo` tool. Correctness tests use real third-party servers instead."""

import json
import sys

TOOLS = [
    {
        "name": "echo",
        "description": "Echo the message",
        "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}},
    }
]


def answer(request: dict) -> dict | None:
    method, rid = request.get("method"), request.get("id")
    if rid is None:
        return None
    if method == "initialize":
        version = request.get("params", {}).get("protocolVersion", "2025-11-25")
        result = {
            "protocolVersion": version,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "tiny", "version": "1"},
        }
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call":
        text = request.get("params", {}).get("arguments", {}).get("message", "")
        result = {"content": [{"type": "text", "text": text}]}
    elif method == "ping":
        result = {}
    else:
        return {
            "jsonrpc": "2.0",
            "id": rid,
            "error": {"code": -32601, "message": "Method not found"},
        }
    return {"jsonrpc": "2.0", "id": rid, "result": result}


for line in sys.stdin:
    if line.strip():
        reply = answer(json.loads(line))
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
