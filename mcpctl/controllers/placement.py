"""Which host actor a server's supervisor lives on: rendezvous hashing of its name.

Adding a host moves only the servers that now hash highest to it (about 1/N of them).
"""

from __future__ import annotations

import hashlib


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
