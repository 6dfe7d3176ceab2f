"""Client sessions of the MCP endpoints (`Mcp-Session-Id`), held in the gateway's memory.

Bounded: a session unused for `idle_seconds` expires, and a principal holds at most
`per_principal` sessions (a new one beyond that is refused until one ends or expires).
After an mcpd restart they are gone and clients get the spec's 404, then initialize again.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mcpctl.mcp.caller import Caller


@dataclass
class ClientSession:
    id: str
    target: str  # "servers/<name>" or "projects/<name>"
    principal: str
    protocol_version: str
    client_info: dict[str, Any] = field(default_factory=dict)
    capabilities: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.monotonic)
    used: float = field(default_factory=time.monotonic)
    # the revision the backends behind it speak, when it is one: results need no reshaping
    backend_version: str | None = None
    # project endpoints: which member server owns each resource URI listed to this client
    resource_owners: dict[str, str] = field(default_factory=dict)

    @property
    def caller(self) -> Caller:
        return Caller(self.id, self.principal, self.target)


class TooManySessions(RuntimeError):
    pass


class SessionRegistry:
    def __init__(self, idle_seconds: float = 3600.0, per_principal: int = 100) -> None:
        self.idle_seconds = idle_seconds
        self.per_principal = per_principal
        self._sessions: dict[str, ClientSession] = {}
        self._owned: Counter[str] = Counter()
        self._next_sweep = time.monotonic() + idle_seconds

    def create(
        self, target: str, principal: str, protocol_version: str, params: dict[str, Any]
    ) -> ClientSession:
        self._sweep()
        if self._owned[principal] >= self.per_principal:
            self._sweep(force=True)
        if self._owned[principal] >= self.per_principal:
            raise TooManySessions(
                f"{principal} already holds {self.per_principal} sessions: end one with "
                f"DELETE, or wait until one is idle for {self.idle_seconds:g} s"
            )
        session = ClientSession(
            id=secrets.token_urlsafe(24),
            target=target,
            principal=principal,
            protocol_version=protocol_version,
            client_info=params.get("clientInfo") or {},
            capabilities=params.get("capabilities") or {},
            created=time.monotonic(),
            used=time.monotonic(),
        )
        self._sessions[session.id] = session
        self._owned[principal] += 1
        return session

    def get(self, session_id: str, target: str) -> ClientSession | None:
        session = self._sessions.get(session_id)
        if session is None or session.target != target:
            return None
        now = time.monotonic()
        if now - session.used > self.idle_seconds:
            self.end(session_id)
            return None
        session.used = now
        return session

    def end(self, session_id: str) -> bool:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        self._owned[session.principal] -= 1
        if not self._owned[session.principal]:
            del self._owned[session.principal]
        return True

    def count(self, target: str | None = None) -> int:
        if target is None:
            return len(self._sessions)
        return sum(1 for s in self._sessions.values() if s.target == target)

    def _sweep(self, force: bool = False) -> None:
        """Expire idle sessions, at most once per idle period unless forced (creation pays)."""
        now = time.monotonic()
        if now < self._next_sweep and not force:
            return
        self._next_sweep = now + self.idle_seconds
        for session in [s for s in self._sessions.values() if now - s.used > self.idle_seconds]:
            self.end(session.id)
