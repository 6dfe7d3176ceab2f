"""Which host actor a server's supervisor lives on (rendezvous hashing of its name), and the
plan that brings the hosts there from where servers run now (pure: the controller actor makes
every Ray call).

Adding a host moves only the servers that now hash highest to it (about 1/N of them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass


def _score(server: str, host: int) -> int:
    digest = hashlib.blake2b(f"{host}/{server}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def host_for(server: str, hosts: int) -> int:
    if hosts < 1:
        raise ValueError("no hosts to place on")
    return max(range(hosts), key=lambda host: _score(server, host))


def pool_size(cpus: float, servers: int, configured: int | None = None) -> int:
    """Hosts to run: the configured count, else the CPU count (at least 2), never more than
    the number of servers (but one, so the first server has a home)."""
    wanted = configured if configured else max(2, int(cpus))
    return max(1, min(wanted, servers))


@dataclass(frozen=True)
class Place:
    server: str
    host: int


@dataclass(frozen=True)
class Move:
    """A server whose host changed with the pool's size: `source` lets go, `target` takes it."""

    server: str
    source: int
    target: int


@dataclass(frozen=True)
class Placement:
    remove: tuple[Place, ...] = ()  # servers no longer desired, on the host they ran on
    move: tuple[Move, ...] = ()
    ensure: tuple[Place, ...] = ()  # desired servers on their host (new, or staying there)

    def applied_to(self, placed: Mapping[str, int]) -> dict[str, int]:
        """Where servers run once this placement is carried out."""
        after = {server: host for server, host in placed.items()}
        for gone in self.remove:
            del after[gone.server]
        for move in self.move:
            after[move.server] = move.target
        for place in self.ensure:
            after[place.server] = place.host
        return after


def plan(desired: Collection[str], placed: Mapping[str, int], hosts: int) -> Placement:
    """From `placed` (server -> the host it runs on) to every `desired` server on its host
    among `hosts`, and nothing else placed. A server that stays is ensured again: its host
    takes the spec as it is now, and adopts what runs."""
    remove = tuple(Place(server, host) for server, host in placed.items() if server not in desired)
    move: list[Move] = []
    ensure: list[Place] = []
    for server in desired:
        host = host_for(server, hosts)
        previous = placed.get(server)
        if previous is not None and previous != host:
            move.append(Move(server, previous, host))
        else:
            ensure.append(Place(server, host))
    return Placement(remove, tuple(move), tuple(ensure))
