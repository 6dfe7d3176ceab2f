"""MCP client sessions are bounded: idle ones expire, a principal holds a limited number."""

from __future__ import annotations

import pytest

from mcpctl.gateway import sessions
from mcpctl.gateway.sessions import SessionRegistry, TooManySessions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(sessions.time, "monotonic", clock)
    return clock


def test_an_idle_session_expires_and_a_used_one_does_not(clock: Clock) -> None:
    registry = SessionRegistry(idle_seconds=60, per_principal=10)
    idle = registry.create("servers/a", "alice@example.com", "2025-11-25", {})
    used = registry.create("servers/a", "alice@example.com", "2025-11-25", {})
    clock.now += 50
    assert registry.get(used.id, "servers/a") is used
    clock.now += 20
    assert registry.get(idle.id, "servers/a") is None  # 70 s idle
    assert registry.get(used.id, "servers/a") is used  # 20 s idle
    assert registry.get(used.id, "projects/a") is None  # another endpoint's id is unknown


def test_a_principal_holds_a_limited_number_of_sessions(clock: Clock) -> None:
    registry = SessionRegistry(idle_seconds=60, per_principal=2)
    first = registry.create("servers/a", "alice@example.com", "2025-11-25", {})
    registry.create("servers/a", "alice@example.com", "2025-11-25", {})
    with pytest.raises(TooManySessions, match="already holds 2 sessions"):
        registry.create("servers/a", "alice@example.com", "2025-11-25", {})
    registry.create("servers/a", "bob@example.com", "2025-11-25", {})  # others are not affected
    assert registry.end(first.id)
    registry.create("servers/a", "alice@example.com", "2025-11-25", {})
    clock.now += 61  # all idle: expired sessions no longer count
    registry.create("servers/a", "alice@example.com", "2025-11-25", {})
    assert registry.count() == 1
