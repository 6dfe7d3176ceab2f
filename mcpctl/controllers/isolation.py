"""Isolated backends (a process per principal or per session): whose a request is, which
index a new one takes, and which have been idle long enough to stop (pure)."""

from __future__ import annotations

from collections.abc import Iterable

from mcpctl.mcp.caller import PER_REQUEST_PREFIX
from mcpctl.models.server import Isolation


def owner_key(isolation: Isolation, principal: str, session: str) -> str | None:
    """The key a backend belongs to; None when the server is shared."""
    if isolation is Isolation.PRINCIPAL:
        return f"principal:{principal}"
    if isolation is Isolation.SESSION and not session.startswith(PER_REQUEST_PREFIX):
        return f"session:{session}"
    if isolation is Isolation.SESSION:  # 2026-07-28 requests have no session: per principal
        return f"principal:{principal}"
    return None


def free_index(taken: Iterable[int]) -> int:
    used = set(taken)
    return next(i for i in range(len(used) + 1) if i not in used)


def idle(idle_for: dict[int, float], idle_seconds: float) -> list[int]:
    """Replicas idle for at least `idle_seconds` (0 while a request or a listener is open)."""
    return sorted(i for i, seconds in idle_for.items() if seconds >= idle_seconds)
