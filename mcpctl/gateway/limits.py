"""The gateway's bounds, from mcpd's settings (DESIGN: everything is bounded)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    request_timeout: float = 300.0  # seconds an MCP request may take, end to end
    max_body_bytes: int = 4 * 1024**2  # MCP and REST bodies
    max_restore_bytes: int = 256 * 1024**2  # a backup restored through the API
    max_batch: int = 100  # JSON-RPC messages in one 2025-03-26 batch
    max_notification_bytes: int = 64 * 1024  # one client notification (gateway/notification_size)
    session_idle_seconds: float = 3600.0
    max_sessions_per_principal: int = 100
    max_client_info_bytes: int = 4096  # clientInfo + capabilities of one initialize
    max_list_pages: int = 100  # pages of one server's list behind a project endpoint
    max_list_items: int = 10_000  # items of one aggregated list
    metrics_require_token: bool = False
