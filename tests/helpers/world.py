"""The world of the e2e tests around one gateway: the test servers of tests/servers (which
write a line per event into a state directory), the members' tokens, and clients on the
gateway's MCP endpoints as those members."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from mcp.client import Client

from tests.helpers.jsonrpc import ACCEPT, INIT
from tests.helpers.mcpd import bearer, metric, sdk_client
from tests.helpers.waiting import until

if TYPE_CHECKING:
    from tests.e2e.gateway import Gateway

SERVERS = Path(__file__).parents[1] / "servers"
MISBEHAVING = SERVERS / "misbehaving.py"  # crashes, hangs, asks, floods, remembers: see its doc
SERVER = "misbehaving"  # the name the tests give it
EVERYTHING = {  # the reference server of the MCP project, from npm (npx), over STDIO
    "package": "@modelcontextprotocol/server-everything",
    "runtime": "node",
    "args": ["stdio"],
}


def lines(state: Path, name: str) -> list[str]:
    """What a test server wrote to `name` in its state directory: a line an event."""
    path = state / name
    return path.read_text().splitlines() if path.exists() else []


@dataclass
class World:
    gateway: Gateway
    state: Path
    tokens: dict[str, str]

    def lines(self, name: str) -> list[str]:
        return lines(self.state, name)

    def until(self, check: Callable[[], Any], timeout: float = 30) -> Any:
        return until(check, timeout=timeout, interval=0.02)

    def until_lines(self, name: str, count: int, timeout: float = 30) -> list[str]:
        """The server writes a line per event; wait until `count` are there."""
        return until(
            lambda: self.lines(name),
            lambda seen: len(seen) >= count,
            timeout=timeout,
            interval=0.02,
            what=lambda seen: f"{name}: {seen}",
        )

    def metric(self, name: str, **labels: str) -> float:
        return metric(self.gateway, name, **labels)


@asynccontextmanager
async def client(world: World, path: str, user: str, **options: Any) -> AsyncIterator[Client]:
    """The SDK client (legacy mode) on `path` of the world's gateway, as `user`."""
    async with sdk_client(f"{world.gateway.url}{path}", world.tokens[user], **options) as opened:
        yield opened


@asynccontextmanager
async def raw_session(world: World, path: str, user: str) -> AsyncIterator[httpx.AsyncClient]:
    """A hand-driven session: for messages no well-behaved client would send."""
    headers = {**bearer(world.tokens[user]), **ACCEPT}
    async with httpx.AsyncClient(base_url=world.gateway.url, headers=headers, timeout=60) as http:
        answer = await http.post(path, json=INIT)
        assert answer.status_code == 200, answer.text
        http.headers["Mcp-Session-Id"] = answer.headers["Mcp-Session-Id"]
        yield http
        await http.delete(path)


def text(result: Any) -> str:
    """The text of a tool result's first content."""
    return str(result.content[0].text)
