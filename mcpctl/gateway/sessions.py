"""Client sessions of the MCP endpoints (`Mcp-Session-Id`), held in the gateway's memory.

After an mcpd restart they are gone and clients get the spec's 404, then initialize again.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ClientSession:
    id: str
    target: str  # "servers/<name>" or "projects/<name>"
    principal: str
    protocol_version: str
    client_info: dict[str, Any] = field(default_factory=dict)
    capabilities: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.monotonic)
    # project endpoints: which member server owns each resource URI listed to this client
    resource_owners: dict[str, str] = field(default_factory=dict)


class SessionRegistry:
    def __init__(self) -> None:
        self._sessions: dict[str, ClientSession] = {}

    def create(
        self, target: str, principal: str, protocol_version: str, params: dict[str, Any]
    ) -> ClientSession:
        session = ClientSession(
            id=secrets.token_urlsafe(24),
            target=target,
            principal=principal,
            protocol_version=protocol_version,
            client_info=params.get("clientInfo") or {},
            capabilities=params.get("capabilities") or {},
        )
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str, target: str) -> ClientSession | None:
        session = self._sessions.get(session_id)
        return session if session is not None and session.target == target else None

    def end(self, session_id: str) -> bool:
        return self._sessions.pop(session_id, None) is not None

    def count(self, target: str | None = None) -> int:
        if target is None:
            return len(self._sessions)
        return sum(1 for s in self._sessions.values() if s.target == target)
