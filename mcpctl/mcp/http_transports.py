"""Transports to HTTP backends through the official SDK's client transports
(Streamable HTTP, and the legacy HTTP+SSE of 2024-11-05).

Bounded as a STDIO server's input is (see transports): what waits to be posted to a backend
session is a queue of MAX_QUEUED messages, and over Streamable HTTP, where each request is a
POST held open until its answer, at most MAX_POSTS requests are posted and unanswered at once
(below the SDK's pool of 100 connections, where more would wait and then end the session). A
send waits up to the write deadline for room, then raises Stalled having queued nothing: a
server that stops answering holds a bounded part of mcpd's memory, and nobody waits for it
longer than the deadline. A request's place is freed by its answer, or when it is cancelled
(its POST then ends when the server answers it or the SDK gives up on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import ClientMessageMetadata, SessionMessage
from mcp_types.jsonrpc import jsonrpc_message_adapter
from pydantic import ValidationError

from mcpctl.mcp import jsonrpc, transports
from mcpctl.mcp.jsonrpc import Message
from mcpctl.mcp.trace_context import headers_of
from mcpctl.mcp.transports import Stalled, Transport

log = logging.getLogger(__name__)

Opener = Callable[[], AbstractAsyncContextManager[tuple[Any, Any]]]
Outgoing = tuple[Message, dict[str, str] | None]  # a message, and HTTP headers of its own
MAX_QUEUED = 64  # messages waiting to be posted to one backend session
MAX_POSTS = 64  # Streamable HTTP requests posted and not answered yet


class SdkTransport(Transport):
    """Runs an SDK client transport in a task and bridges its streams to dicts."""

    def __init__(
        self, opener: Opener, max_posts: int | None = None, write_timeout: float | None = None
    ) -> None:
        self._opener = opener
        self.write_timeout = transports.WRITE_TIMEOUT if write_timeout is None else write_timeout
        self._inbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self._outbox: asyncio.Queue[Outgoing] = asyncio.Queue(MAX_QUEUED)
        self._posts = asyncio.Semaphore(max_posts) if max_posts else None
        self._posted: set[Any] = set()  # ids of the requests holding a place among them
        self._ready = asyncio.Event()
        self._failure: BaseException | None = None
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def queued(self) -> int:
        """Messages waiting to be posted."""
        return self._outbox.qsize()

    @property
    def posted(self) -> int:
        """Requests posted (or about to be) and not answered yet, when they are bounded."""
        return len(self._posted)

    async def _run(self) -> None:
        try:
            async with self._opener() as (read_stream, write_stream):
                self._ready.set()
                async with asyncio.TaskGroup() as group:
                    pump = group.create_task(self._pump_out(write_stream))
                    async for item in read_stream:
                        if isinstance(item, Exception):
                            log.debug("transport error from backend: %s", item)
                            continue
                        message = item.message.model_dump(by_alias=True, exclude_unset=True)
                        if jsonrpc.is_response(message):
                            self._free(message["id"])
                        self._inbox.put_nowait(message)
                    pump.cancel()
        except Exception as error:  # any failure ends the session
            self._failure = error
        finally:
            self._ready.set()
            self._inbox.put_nowait(None)

    async def _pump_out(self, write_stream: Any) -> None:
        while True:
            message, headers = await self._outbox.get()
            try:
                parsed = jsonrpc_message_adapter.validate_python(message)
            except ValidationError as error:  # never end the backend's session over one message
                log.warning("not sending a malformed message to the backend: %s", error)
                if jsonrpc.is_request(message):
                    self._free(message["id"])
                continue
            if headers is None:
                await write_stream.send(SessionMessage(parsed))
            else:  # a 2026-07-28 request: MCP-Protocol-Version, Mcp-Method, Mcp-Name
                metadata = ClientMessageMetadata(headers=headers)
                await write_stream.send(SessionMessage(parsed, metadata=metadata))

    async def send(self, message: Message, headers: dict[str, str] | None = None) -> None:
        # W3C trace context of the message's _meta also as HTTP headers (traceparent,
        # tracestate), for HTTP backends and proxies that trace (mcpctl/observability/tracing.py)
        params = message.get("params")
        if isinstance(params, dict) and isinstance(params.get("_meta"), dict):
            traced = headers_of(message)
            if traced:
                headers = {**headers, **traced} if headers else traced
        await self._ready.wait()
        if self._task.done():
            raise ConnectionError(f"backend connection failed: {self._failure}")
        if message.get("method") == "notifications/cancelled" and isinstance(params, dict):
            self._free(params.get("requestId"))  # given up: not waited for any more
        placed = None  # the request id that took a place among the posts
        waiting_for_a_place = self._posts is not None and jsonrpc.is_request(message)
        try:
            async with asyncio.timeout(self.write_timeout):
                if waiting_for_a_place:
                    placed = await self._place(message["id"])
                    waiting_for_a_place = False
                await self._outbox.put((message, headers))
        except TimeoutError:
            self._free(placed)
            raise Stalled(self._stalled(waiting_for_a_place)) from None
        except BaseException:
            self._free(placed)
            raise

    async def _place(self, request_id: Any) -> Any:
        """Wait for a place among the requests posted at once; the id that took it, or None
        when it holds one already (sent again)."""
        assert self._posts is not None
        if request_id in self._posted:
            return None
        await self._posts.acquire()
        self._posted.add(request_id)
        return request_id

    def _free(self, request_id: Any) -> None:
        if request_id is not None and request_id in self._posted:
            self._posted.discard(request_id)
            assert self._posts is not None
            self._posts.release()

    def _stalled(self, waiting_for_a_place: bool) -> str:
        seconds = f"{self.write_timeout:g} s"
        if waiting_for_a_place:
            return (
                f"the server has {len(self._posted)} requests unanswered (the most it is sent "
                f"at once) and answered none for {seconds}"
            )
        return f"the server has not answered what it was sent for {seconds}"

    async def receive(self) -> Message | None:
        return await self._inbox.get()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


def streamable_http(url: str) -> SdkTransport:
    return SdkTransport(lambda: _streams(streamable_http_client(url)), max_posts=MAX_POSTS)


def legacy_sse(url: str) -> SdkTransport:
    return SdkTransport(lambda: _streams(sse_client(url)))


@contextlib.asynccontextmanager
async def _streams(manager: AbstractAsyncContextManager[Any]) -> AsyncIterator[tuple[Any, Any]]:
    async with manager as streams:
        yield streams[0], streams[1]
