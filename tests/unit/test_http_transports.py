"""SdkTransport's bounds (mcpctl/mcp/http_transports.py), over the SDK's stream interface in
memory: the queue of what waits to be posted, the requests posted at once, the deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp.shared.message import SessionMessage
from mcp_types.jsonrpc import jsonrpc_message_adapter

from mcpctl.mcp import jsonrpc
from mcpctl.mcp.http_transports import MAX_QUEUED, SdkTransport
from mcpctl.mcp.transports import Stalled
from tests.helpers.jsonrpc import request

DEADLINE = 0.2


class Backend:
    """The SDK transport's two streams; what is posted is taken only while `taking`."""

    def __init__(self) -> None:
        self.to_client, self.from_backend = anyio.create_memory_object_stream[Any](0)
        self.to_backend, self.from_client = anyio.create_memory_object_stream[Any](0)
        self.taken: list[dict[str, Any]] = []

    @asynccontextmanager
    async def open(self) -> AsyncIterator[tuple[Any, Any]]:
        yield self.from_backend, self.to_backend

    async def take(self) -> None:
        async for item in self.from_client:
            self.taken.append(item.message.model_dump(by_alias=True, exclude_unset=True))

    async def answer(self, request_id: int) -> None:
        response = jsonrpc.result(request_id, {})
        await self.to_client.send(SessionMessage(jsonrpc_message_adapter.validate_python(response)))


async def test_a_backend_that_takes_nothing_holds_a_queue_and_fails_later_sends() -> None:
    backend = Backend()
    transport = SdkTransport(backend.open, write_timeout=DEADLINE)
    note = jsonrpc.notification("notifications/roots/list_changed")
    for _ in range(MAX_QUEUED + 1):  # one is on its way, blocked; the rest wait in the queue
        await asyncio.wait_for(transport.send(note), DEADLINE / 2)
    assert transport.queued == MAX_QUEUED
    began = time.monotonic()
    with pytest.raises(Stalled, match=r"has not answered what it was sent for 0\.2 s"):
        await transport.send(note)
    assert DEADLINE <= time.monotonic() - began < DEADLINE + 1
    assert transport.queued == MAX_QUEUED  # the failed send left nothing
    await transport.close()


async def test_requests_posted_at_once_are_bounded_and_freed_by_answers_and_cancels() -> None:
    backend = Backend()
    transport = SdkTransport(backend.open, max_posts=2, write_timeout=DEADLINE)
    async with anyio.create_task_group() as group:
        group.start_soon(backend.take)
        await transport.send(request(1, "ping"))
        await transport.send(request(2, "ping"))
        with pytest.raises(Stalled, match=r"has 2 requests unanswered .* none for 0\.2 s"):
            await transport.send(request(3, "ping"))
        assert transport.posted == 2

        await backend.answer(1)  # an answer frees a place
        assert await transport.receive() == jsonrpc.result(1, {})
        await asyncio.wait_for(transport.send(request(4, "ping")), DEADLINE / 2)

        waiting = asyncio.ensure_future(transport.send(request(5, "ping")))
        await asyncio.sleep(DEADLINE / 4)
        assert not waiting.done()
        cancel = jsonrpc.notification("notifications/cancelled", {"requestId": 2})
        await transport.send(cancel)  # a request given up frees its place
        await asyncio.wait_for(waiting, DEADLINE / 2)
        await asyncio.sleep(0.01)
        assert [m.get("id", m.get("method")) for m in backend.taken] == [
            1, 2, 4, "notifications/cancelled", 5,
        ]  # fmt: skip
        assert transport.posted == 2  # 4 and 5
        await transport.close()
        group.cancel_scope.cancel()
