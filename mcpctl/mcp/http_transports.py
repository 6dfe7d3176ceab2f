"""Transports to HTTP backends through the official SDK's client transports
(Streamable HTTP, and the legacy HTTP+SSE of 2024-11-05)."""

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

from mcpctl.mcp.jsonrpc import Message
from mcpctl.mcp.transports import Transport
from mcpctl.observability import tracing

log = logging.getLogger(__name__)

Opener = Callable[[], AbstractAsyncContextManager[tuple[Any, Any]]]
Outgoing = tuple[Message, dict[str, str] | None]  # a message, and HTTP headers of its own


class SdkTransport(Transport):
    """Runs an SDK client transport in a task and bridges its streams to dicts."""

    def __init__(self, opener: Opener) -> None:
        self._opener = opener
        self._inbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self._outbox: asyncio.Queue[Outgoing | None] = asyncio.Queue()
        self._ready = asyncio.Event()
        self._failure: BaseException | None = None
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            async with self._opener() as (read_stream, write_stream):
                self._ready.set()
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._pump_out(write_stream))
                    async for item in read_stream:
                        if isinstance(item, Exception):
                            log.debug("transport error from backend: %s", item)
                            continue
                        self._inbox.put_nowait(
                            item.message.model_dump(by_alias=True, exclude_unset=True)
                        )
                    self._outbox.put_nowait(None)
        except Exception as error:  # any failure ends the session
            self._failure = error
        finally:
            self._ready.set()
            self._inbox.put_nowait(None)

    async def _pump_out(self, write_stream: Any) -> None:
        while (outgoing := await self._outbox.get()) is not None:
            message, headers = outgoing
            try:
                parsed = jsonrpc_message_adapter.validate_python(message)
            except ValidationError as error:  # never end the backend's session over one message
                log.warning("not sending a malformed message to the backend: %s", error)
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
            traced = tracing.headers_of(message)
            if traced:
                headers = {**headers, **traced} if headers else traced
        await self._ready.wait()
        if self._task.done():
            raise ConnectionError(f"backend connection failed: {self._failure}")
        self._outbox.put_nowait((message, headers))

    async def receive(self) -> Message | None:
        return await self._inbox.get()

    async def close(self) -> None:
        self._outbox.put_nowait(None)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


def streamable_http(url: str) -> SdkTransport:
    return SdkTransport(lambda: _streams(streamable_http_client(url)))


def legacy_sse(url: str) -> SdkTransport:
    return SdkTransport(lambda: _streams(sse_client(url)))


@contextlib.asynccontextmanager
async def _streams(manager: AbstractAsyncContextManager[Any]) -> AsyncIterator[tuple[Any, Any]]:
    async with manager as streams:
        yield streams[0], streams[1]
