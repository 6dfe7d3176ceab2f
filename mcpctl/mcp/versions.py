"""Protocol revisions the gateway speaks to clients, and how it picks one."""

from __future__ import annotations

HANDSHAKE_REVISIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
SINGLE_EXCHANGE_REVISIONS = ("2026-07-28",)
SUPPORTED = HANDSHAKE_REVISIONS + SINGLE_EXCHANGE_REVISIONS
LATEST_HANDSHAKE = HANDSHAKE_REVISIONS[-1]


def negotiate(requested: object) -> str:
    """The spec's rule: answer with the client's revision if supported, else our latest."""
    if isinstance(requested, str) and requested in HANDSHAKE_REVISIONS:
        return requested
    return LATEST_HANDSHAKE
