"""Server-sent event streams of the MCP endpoints."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

from starlette.responses import StreamingResponse

from mcpctl.mcp import jsonrpc
from mcpctl.mcp.jsonrpc import Message

KEEPALIVE_SECONDS = 15.0  # a comment line on an idle stream keeps proxies from closing it


def sse(message: Message) -> bytes:
    return b"event: message\ndata: " + jsonrpc.dumps(message) + b"\n\n"


def event_stream(events: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


async def with_keepalive(messages: AsyncGenerator[Message, None]) -> AsyncIterator[bytes]:
    """The messages as events, with a keepalive comment whenever none came for a while."""
    pending = asyncio.ensure_future(anext(messages))
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_SECONDS)
            if not done:
                yield b": keepalive\n\n"
                continue
            yield sse(pending.result())
            pending = asyncio.ensure_future(anext(messages))
    except StopAsyncIteration:
        return
    finally:
        pending.cancel()
        with contextlib.suppress(BaseException):
            await pending
        await messages.aclose()
