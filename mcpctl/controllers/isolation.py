"""Isolated backends (a process per principal or per session), decided as data: whose a
request is, which backend serves it (started on first use), which go when the spec changes or
when they have idled long enough, and which roll to a changed spec. The supervisor makes the
calls."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from mcpctl.models.server import Isolation, ServerSpec


def owner_key(isolation: Isolation, principal: str, session: str | None) -> str | None:
    """The key a backend belongs to; None when the server is shared. `session` is None for a
    request that has none (2026-07-28): per session, it belongs to its principal."""
    if isolation is Isolation.PRINCIPAL:
        return f"principal:{principal}"
    if isolation is Isolation.SESSION and session is not None:
        return f"session:{session}"
    if isolation is Isolation.SESSION:
        return f"principal:{principal}"
    return None


def free_index(taken: Iterable[int]) -> int:
    used = set(taken)
    return next(i for i in range(len(used) + 1) if i not in used)


@dataclass(frozen=True)
class Serve:
    index: int
    start: bool = False  # a new backend: started, and owned by the request's owner


@dataclass(frozen=True)
class Refuse:
    reason: str


def backend_for(
    server: str, spec: ServerSpec, key: str, owners: Mapping[str, int], running: Collection[int]
) -> Serve | Refuse:
    """The backend of owner `key`: its own while it runs, else a new one, within
    maxInstances. `owners` maps owner key to backend index; `running` are the backends."""
    index = owners.get(key)
    if index is not None and index in running:
        return Serve(index)
    if spec.replicas == 0:
        return Refuse(f"server {server!r} is scaled to 0")
    if len(owners) >= spec.max_instances:
        return Refuse(
            f"server {server!r} runs its limit of {spec.max_instances} isolated "
            "instances (maxInstances); try again when one has been idle"
        )
    return Serve(free_index(running), start=True)


@dataclass(frozen=True)
class Retirement:
    owners: Mapping[str, int] = field(default_factory=dict)  # the owners that stay
    retire: tuple[int, ...] = ()  # backends to stop
    forget: bool = False  # and drop their instance rows


def on_spec(spec: ServerSpec, owners: Mapping[str, int], running: Iterable[int]) -> Retirement:
    """What a new spec retires. Shared now: the owners' backends go (the replicas are then
    reconcile.plan's). Isolated: what no owner holds goes (everything at replicas 0), its rows
    forgotten only when no owned backend stays."""
    if spec.isolation is Isolation.SHARED:
        return Retirement({}, tuple(sorted(owners.values())), forget=True)
    kept = dict(owners) if spec.replicas > 0 else {}
    owned = set(kept.values())
    unowned = tuple(i for i in running if i not in owned)
    return Retirement(kept, unowned, forget=not owned)


def stale(running: Mapping[int, str | None], spec_hash: str) -> tuple[int, ...]:
    """Backends that run another spec than `spec_hash` (None: not started yet), to roll."""
    return tuple(i for i, running_hash in running.items() if running_hash not in (None, spec_hash))


def idle(idle_for: dict[int, float], idle_seconds: float) -> list[int]:
    """Replicas idle for at least `idle_seconds` (0 while a request or a listener is open)."""
    return sorted(i for i, seconds in idle_for.items() if seconds >= idle_seconds)


def reap(
    owners: Mapping[str, int], idle_for: Mapping[int, float], idle_seconds: float
) -> Retirement:
    """Owned backends idle for `idle_seconds` go, their owners with them (rows stay)."""
    done = idle({i: idle_for[i] for i in owners.values() if i in idle_for}, idle_seconds)
    kept = {key: i for key, i in owners.items() if i not in done}
    return Retirement(kept, tuple(done), forget=False)
