"""The instance status machine: which transitions a replica may make, and why."""

from __future__ import annotations

from enum import StrEnum

from mcpctl.models.instance import InstanceStatus as S

ALLOWED: dict[S, frozenset[S]] = {
    S.PENDING: frozenset({S.STARTING, S.ERROR, S.STOPPED}),
    S.STARTING: frozenset({S.RUNNING, S.ERROR, S.STOPPED, S.STARTING}),
    S.RUNNING: frozenset({S.STARTING, S.ERROR, S.STOPPED}),
    # ERROR -> RUNNING: a crash-looping instance whose latest life stayed up long enough.
    S.ERROR: frozenset({S.STARTING, S.RUNNING, S.STOPPED, S.ERROR}),
    S.STOPPED: frozenset({S.STARTING}),
}


class IllegalTransition(RuntimeError):
    pass


def transition(current: S, target: S) -> S:
    if target not in ALLOWED[current]:
        raise IllegalTransition(f"{current} -> {target}")
    return target


class Phase(StrEnum):
    """Where a replica is in one life of its process."""

    STARTING = "starting"  # started, handshake not answered yet
    READY = "ready"  # the handshake was answered
    HEALTHY = "healthy"  # it has stayed up long enough to reset the back-off
    FAILED = "failed"  # it could not start (or ended before its handshake)
    CRASHED = "crashed"  # it ended on its own after its handshake; a replacement follows


_SHOWN = {
    Phase.STARTING: S.STARTING,
    Phase.READY: S.RUNNING,
    Phase.HEALTHY: S.RUNNING,
    Phase.FAILED: S.ERROR,
    Phase.CRASHED: S.STARTING,
}


def shown(phase: Phase, crash_loop: bool) -> S:
    """The status an instance shows in that phase. A crash loop shows ERROR throughout, until
    a life stays up long enough (HEALTHY), as Kubernetes shows CrashLoopBackOff."""
    if crash_loop and phase is not Phase.HEALTHY:
        return S.ERROR
    return _SHOWN[phase]
