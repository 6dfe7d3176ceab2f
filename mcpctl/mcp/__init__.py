"""MCP wire handling: JSON-RPC framing, sessions, id remapping, protocol revisions."""
