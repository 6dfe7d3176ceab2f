"""The Starlette app: REST API, MCP endpoints, auth and metrics."""
