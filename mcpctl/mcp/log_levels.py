"""Log levels of many clients over one backend.

A 2025-era client sets its level for its session (`logging/setLevel`); a 2026-07-28 client asks
per request (`io.modelcontextprotocol/logLevel` in `_meta`) and gets no log lines otherwise.
The backend has one level for everyone, so mcpd owns it: the backend is set to the most
verbose level anyone wants, and each client gets only the lines at or above its own level
(DESIGN: one client's choice never changes what another sees).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from mcpctl.mcp.jsonrpc import Message

LEVEL_KEY = "io.modelcontextprotocol/logLevel"
LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
SEVERITY = {level: rank for rank, level in enumerate(LEVELS)}
MAX_SESSIONS = 10_000  # sessions whose level is remembered; the oldest are forgotten


def requested(message: Message) -> str | None:
    """The level a 2026-07-28 request asks for, if any."""
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    level = meta.get(LEVEL_KEY) if isinstance(meta, dict) else None
    return level if level in SEVERITY else None


def passes(line: Message, level: str | None) -> bool:
    """Whether a `notifications/message` is at or above `level`."""
    if level is None:
        return True
    params = line.get("params")
    shown: Any = params.get("level") if isinstance(params, dict) else None
    return SEVERITY.get(shown, len(LEVELS)) >= SEVERITY[level]


def most_verbose(levels: Iterable[str | None]) -> str | None:
    wanted = [level for level in levels if level is not None]
    return min(wanted, key=SEVERITY.__getitem__) if wanted else None


class SessionLevels:
    """The levels 2025-era sessions set, bounded."""

    def __init__(self) -> None:
        self._levels: OrderedDict[str, str] = OrderedDict()

    def set(self, session: str, level: str) -> None:
        self._levels[session] = level
        self._levels.move_to_end(session)
        while len(self._levels) > MAX_SESSIONS:
            self._levels.popitem(last=False)

    def get(self, session: str) -> str | None:
        return self._levels.get(session)

    def values(self) -> Iterable[str]:
        return self._levels.values()
