"""A tiny MCP server with one `echo` tool, for benchmarks. Correctness tests use real
third-party servers instead.

    python bench/tiny_server.py            STDIO, stdlib only (~10 MiB): initialize, ping,
                                           tools/list, tools/call echo (fleet, heal)
    python bench/tiny_server.py http PORT  the official SDK's own Streamable HTTP server
                                           (MCPServer) on 127.0.0.1:PORT/mcp: the SDK HTTP
                                           floor of bench/load.py

Both answer echo with "Echo: <message>", as @modelcontextprotocol/server-everything does.
"""

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
        result = {"content": [{"type": "text", "text": f"Echo: {text}"}]}
    elif method == "ping":
        result = {}
    else:
        return {
            "jsonrpc": "2.0",
            "id": rid,
            "error": {"code": -32601, "message": "Method not found"},
        }
    return {"jsonrpc": "2.0", "id": rid, "result": result}


def serve_stdio() -> None:
    for line in sys.stdin:
        if line.strip():
            reply = answer(json.loads(line))
            if reply is not None:
                sys.stdout.write(json.dumps(reply) + "\n")
                sys.stdout.flush()


def serve_http(port: int) -> None:
    from mcp.server.mcpserver import MCPServer  # only here: STDIO mode stays stdlib-only

    server = MCPServer("tiny", log_level="WARNING")

    @server.tool()
    def echo(message: str) -> str:
        """Echo the message"""
        return f"Echo: {message}"

    server.run("streamable-http", host="127.0.0.1", port=port)


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        serve_http(int(sys.argv[2]))
    else:
        serve_stdio()
