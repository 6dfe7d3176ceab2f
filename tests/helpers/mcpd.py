"""A running mcpd seen as its users see it: the REST API (instances, members, metrics) and
the official SDK client on an MCP endpoint. `mcpd` is anything with its `url` and an admin
`token`: the e2e conftest's Mcpd, a Gateway, a Deployed chart, an Endpoint."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from tests.helpers.waiting import until


class Reachable(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def token(self) -> str: ...


@dataclass
class Endpoint:
    """One address of an mcpd (a replica behind a Service, say) and an admin token."""

    url: str
    token: str


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api(mcpd: Reachable, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """A request to the REST API (`path` below /api/v1), as the admin."""
    return httpx.request(
        method, f"{mcpd.url}/api/v1{path}", headers=bearer(mcpd.token), timeout=60, **kwargs
    )


def ready(url: str, timeout: float = 2) -> bool:
    """mcpd at `url` answers /readyz with 200."""
    try:
        return httpx.get(f"{url}/readyz", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def instances(mcpd: Reachable, server: str) -> list[dict[str, Any]]:
    """The server's instances, from the REST API (what a user polls too)."""
    answer = httpx.get(
        f"{mcpd.url}/api/v1/instances", params={"server": server}, headers=bearer(mcpd.token)
    )
    return list(answer.json()["items"])


def wait_running(
    mcpd: Reachable, server: str, replicas: int = 1, timeout: float = 180
) -> list[dict[str, Any]]:
    """Every instance of the server, once `replicas` of them are RUNNING: they come up in the
    background."""
    return until(
        lambda: instances(mcpd, server),
        lambda items: len([i for i in items if i["status"] == "RUNNING"]) >= replicas,
        timeout=timeout,
        interval=0.2,
        what=lambda items: f"{server} not RUNNING: {items}",
    )


def wait_instances(
    mcpd: Reachable,
    server: str,
    status: str = "RUNNING",
    count: int = 1,
    timeout: float = 240,
    exclude: Collection[str] = (),
    interval: float = 0.25,
) -> list[dict[str, Any]]:
    """The instances in `status` (not on a pod in `exclude`), once there are `count`; on
    timeout, every instance seen last."""

    def matching(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [i for i in items if i["status"] == status and i.get("pod") not in exclude]

    items = until(
        lambda: instances(mcpd, server),
        lambda items: len(matching(items)) >= count,
        timeout=timeout,
        interval=interval,
        what=lambda items: items,
    )
    return matching(items)


def add_server(mcpd: Reachable, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The server created through the REST API (201); what the API answered."""
    created = api(mcpd, "POST", "/servers", json={"metadata": {"name": name}, "spec": spec})
    assert created.status_code == 201, created.text
    return dict(created.json())


def add_member(api: httpx.Client, user: str) -> str:
    """`user` (an email, or a name at example.com) as a member, through an admin's client on
    the REST API; their token."""
    email = user if "@" in user else f"{user}@example.com"
    api.post("/api/v1/users", json={"metadata": {"name": email}, "spec": {"role": "member"}})
    return str(api.post(f"/api/v1/users/{email}/tokens", json={}).json()["token"])


def metric(mcpd: Reachable, name: str, **labels: str) -> float:
    """The sum of the samples of `name` on /metrics that carry `labels`."""
    body = httpx.get(f"{mcpd.url}/metrics", headers=bearer(mcpd.token)).text
    total = 0.0
    for line in body.splitlines():
        if re.match(rf"{name}(\{{| )", line) and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


@asynccontextmanager
async def sdk_client(
    url: str, token: str, mode: str = "legacy", timeout: float = 60, **options: Any
) -> AsyncIterator[Client]:
    """The official SDK client on an MCP endpoint of mcpd (`mode`: legacy, 2026-07-28, auto)."""
    http = httpx2.AsyncClient(headers=bearer(token), timeout=timeout)
    transport = streamable_http_client(url, http_client=http)
    async with http, Client(transport, mode=mode, **options) as client:
        yield client


def server_client(
    mcpd: Reachable, server: str, mode: str = "legacy", timeout: float = 60, **options: Any
) -> AbstractAsyncContextManager[Client]:
    """The SDK client on a server's endpoint, as the admin."""
    return sdk_client(f"{mcpd.url}/mcp/servers/{server}", mcpd.token, mode, timeout, **options)
