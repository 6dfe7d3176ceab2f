"""Client sessions of the MCP endpoints (`Mcp-Session-Id`).

A session id is self-contained: the session (endpoint, principal, revision, client
capabilities) encrypted and authenticated with a key derived from the cluster key (Fernet),
so any mcpd replica serves it and a restarted mcpd keeps it (DESIGN: sessions are
self-contained). The principal's rights are still checked on every request.

Bounded, per replica: a session unused for `idle_seconds` expires here, and a principal opens
at most `per_principal` sessions here. Ids older than `max_age` are refused everywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken

from mcpctl.mcp.caller import PER_REQUEST_PREFIX, Caller


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

    @cached_property  # read once or more per request: the digest is made once per session
    def caller(self) -> Caller:
        """Who asks, for the hosts: the session by a short digest of its (long) id."""
        digest = hashlib.sha256(self.id.encode()).digest()[:16]
        prefix = PER_REQUEST_PREFIX if self.id.startswith(PER_REQUEST_PREFIX) else ""
        session = prefix + base64.urlsafe_b64encode(digest).decode()
        return Caller(session, self.principal, self.target)


class TooManySessions(RuntimeError):
    pass


class SessionRegistry:
    def __init__(
        self,
        idle_seconds: float = 3600.0,
        per_principal: int = 100,
        cluster_key: bytes | None = None,
        max_age: float = 7 * 86400.0,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.per_principal = per_principal
        self.max_age = max_age
        self._fernet = fernet_for(cluster_key or Fernet.generate_key(), b"mcpd-sessions-v1")
        self._ended: dict[str, float] = {}  # ids ended here (DELETE, idle): not reopened
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
        client_info = params.get("clientInfo") or {}
        capabilities = params.get("capabilities") or {}
        sealed = {"t": target, "p": principal, "v": protocol_version, "i": client_info}
        sealed["c"] = capabilities
        session = ClientSession(
            id=self._fernet.encrypt(orjson.dumps(sealed)).decode(),
            target=target,
            principal=principal,
            protocol_version=protocol_version,
            client_info=client_info,
            capabilities=capabilities,
            created=time.monotonic(),
            used=time.monotonic(),
        )
        self._sessions[session.id] = session
        self._owned[principal] += 1
        return session

    def get(self, session_id: str, target: str) -> ClientSession | None:
        session = self._sessions.get(session_id) or self._open(session_id)
        if session is None or session.target != target:
            return None
        now = time.monotonic()
        if now - session.used > self.idle_seconds:
            self.end(session_id)
            return None
        session.used = now
        return session

    def _open(self, session_id: str) -> ClientSession | None:
        """A session another replica (or an earlier mcpd) began: known from its id alone."""
        if not session_id or len(session_id) > 16384 or session_id in self._ended:
            return None
        try:
            sealed = orjson.loads(self._fernet.decrypt(session_id, ttl=int(self.max_age)))
        except (InvalidToken, orjson.JSONDecodeError, ValueError):
            return None
        session = ClientSession(
            id=session_id,
            target=sealed["t"],
            principal=sealed["p"],
            protocol_version=sealed["v"],
            client_info=sealed["i"],
            capabilities=sealed["c"],
        )
        self._sessions[session_id] = session  # not counted against its principal's opens here
        return session

    def end(self, session_id: str) -> bool:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        self._ended[session_id] = time.monotonic()
        if self._owned[session.principal] > 0:
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
        self._ended = {i: at for i, at in self._ended.items() if now - at < self.max_age}
        for session in [s for s in self._sessions.values() if now - s.used > self.idle_seconds]:
            self.end(session.id)


def fernet_for(cluster_key: bytes, purpose: bytes) -> Fernet:
    """A Fernet of its own for one purpose (sessions, request states, task ids), derived
    from the cluster key (never the key itself), so every replica derives the same one."""
    derived = hmac.new(cluster_key, purpose, hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(derived))
