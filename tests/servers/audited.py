"""An MCP server on the official SDK (MCPServer), for the audit trail's tests: `echo` answers,
`fail` raises (the SDK answers a tool error: `isError: true`), `remember` keeps nothing.
Started the way users start servers: `command: python`, `args: [this file]`."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

server = MCPServer("audited")


@server.tool()
def echo(text: str) -> str:
    """Answers the text."""
    return f"echo: {text}"


@server.tool()
def fail(text: str) -> str:
    """Always fails (a tool error, not a protocol error)."""
    raise ValueError(f"failed on purpose: {len(text)} characters")


if __name__ == "__main__":
    server.run("stdio")
