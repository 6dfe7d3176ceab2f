"""The instance status machine: which transitions a replica may make, and why."""

from __future__ import annotations

from mcpctl.models.instance import InstanceStatus as S

ALLOWED: dict[S, frozenset[S]] = {
    S.PENDING: frozenset({S.STARTING, S.ERROR, S.STOPPED}),
    S.STARTING: frozenset({S.RUNNING, S.ERROR, S.STOPPED, S.STARTING}),
    S.RUNNING: frozenset({S.STARTING, S.ERROR, S.STOPPED}),
    S.ERROR: frozenset({S.STARTING, S.STOPPED, S.ERROR}),
    S.STOPPED: frozenset({S.STARTING}),
}


class IllegalTransition(RuntimeError):
    pass


def transition(current: S, target: S) -> S:
    if target not in ALLOWED[current]:
        raise IllegalTransition(f"{current} -> {target}")
    return target
