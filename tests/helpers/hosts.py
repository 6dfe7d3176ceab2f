"""A host (mcpctl.actors.host) as the integration tests run it, in the test process without
Ray: the servers it is told to run stored in its database, and a gateway's link to its data
plane."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvloop
from cryptography.fernet import Fernet

from mcpctl.actors.host import Host, HostConfig
from mcpctl.dataplane import frames
from mcpctl.dataplane.client import HostLink
from mcpctl.models.kinds import SERVER
from mcpctl.store.database import Database
from mcpctl.store.repositories.specs import SERVERS

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,  # what Ray's async actors and mcpd's uvicorn run on
}


def save(database: Database, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The server stored as a user would create it; its spec as a host is handed it."""
    resource = SERVER.parse({"metadata": {"name": name}, "spec": spec})
    with database.transaction() as session:
        SERVERS.put(session, resource, "system@mcpctl.io")
    return resource.spec.model_dump(mode="json")


def link_to(
    address: dict[str, Any], token: str, name: str = "host 0", local: bool = True
) -> HostLink:
    """A gateway's connection to the data plane listening at `address`."""

    async def resolve() -> dict[str, Any]:
        return address

    return HostLink(name, resolve, token, local=local)


@asynccontextmanager
async def linked(host: Host, token: str) -> AsyncIterator[HostLink]:
    """The host's data plane started, and a gateway's link to it (closed afterwards)."""
    link = link_to(await host._dataplane.start(), token)
    try:
        yield link
    finally:
        await link.close()


@asynccontextmanager
async def running_host(
    database: Database, data: Path, servers: dict[str, dict[str, Any]], **config: Any
) -> AsyncIterator[tuple[Host, HostLink]]:
    """A host on `database` running `servers` (each answering its handshake), and a gateway's
    link to it; afterwards the link closed, the host shut down, the database disposed of."""
    key = Fernet.generate_key()
    host = Host(HostConfig(0, database.url, key, str(data), startup_timeout=60, **config))
    try:
        for name, spec in servers.items():
            await host.ensure(name, save(database, name, spec))
        for name in servers:
            assert await host.describe(name, timeout=60) is not None, name
        async with linked(host, frames.token_for(key)) as link:
            yield host, link
    finally:
        await host.shutdown()
        database.dispose()
