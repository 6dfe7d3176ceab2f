"""The mcpctl command: a kubectl-like client of mcpd's REST API."""
