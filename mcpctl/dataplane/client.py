"""The gateway's end: one persistent, multiplexed connection to a host.

It connects on first use to the address the host gives (`resolve`, asked through Ray, which
also waits for a host Ray is restarting), and again after the connection breaks: streams open
at that moment end with HostLost, never hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from mcpctl.dataplane import frames
from mcpctl.mcp.caller import Caller
from mcpctl.mcp.jsonrpc import Message

log = logging.getLogger(__name__)
Resolve = Callable[[], Awaitable[dict[str, Any]]]
_END = object()
_LOST = object()


class HostLost(ConnectionError):
    pass


class HostLink:
    def __init__(self, name: str, resolve: Resolve, token: str, local: bool = True) -> None:
        self.name = name
        self.resolve = resolve
        self.token = token
        self.local = local  # the host is on this node: its Unix socket is reachable
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._streams: dict[int, asyncio.Queue[Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def _connection(self) -> asyncio.StreamWriter:
        if self.connected:
            assert self._writer is not None
            return self._writer
        async with self._lock:
            if self.connected:
                assert self._writer is not None
                return self._writer
            address = await self.resolve()
            if self.local or "tcp" not in address:
                reader, writer = await asyncio.open_unix_connection(address["unix"], limit=2**16)
            else:
                host, port = address["tcp"]
                reader, writer = await asyncio.open_connection(host, port, limit=2**16)
            writer.write(frames.encode(frames.HELLO, self.token))
            self._writer = writer
            self._loop = asyncio.get_running_loop()
            self._reader_task = asyncio.get_running_loop().create_task(self._read(reader, writer))
            log.info("data plane: connected to %s", self.name)
            return writer

    def drop(self) -> None:
        """Break the connection now (from any thread): its streams end with HostLost."""
        writer, loop = self._writer, self._loop
        if writer is not None and loop is not None:
            loop.call_soon_threadsafe(writer.transport.abort)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (frame := await frames.read_frame(reader)) is not None:
                queue = self._streams.get(frame[1])
                if queue is None:
                    continue  # a stream this side ended already
                queue.put_nowait(frame[2] if frame[0] == frames.ITEM else _END)
        except frames.FrameError as error:
            log.warning("data plane: %s sent a bad frame: %s", self.name, error)
        finally:
            writer.close()
            if self._writer is writer:
                self._writer = None
            for queue in self._streams.values():
                queue.put_nowait(_LOST)

    async def stream(
        self, server: str, caller: Caller, message: Message | None
    ) -> AsyncGenerator[Message, None]:
        """A CALL (with a message) or a LISTEN (without): what the host sends for it."""
        writer = await self._connection()
        sid = next(self._ids)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._streams[sid] = queue
        who = [caller.session, caller.principal, caller.endpoint]
        ended = False
        consumed = 0
        try:
            if self._writer is not writer:  # it broke since: _read will not tell this stream
                ended = True
                raise HostLost(f"the connection to {self.name} was lost")
            if message is None:
                writer.write(frames.encode(frames.LISTEN, sid, server, who))
            else:
                writer.write(frames.encode(frames.CALL, sid, server, who, message))
            await writer.drain()
            while True:
                item = await queue.get()
                if item is _END:
                    ended = True
                    return
                if item is _LOST:
                    ended = True
                    raise HostLost(f"the connection to {self.name} was lost")
                yield item
                consumed += 1
                if consumed >= frames.WINDOW // 2:
                    writer.write(frames.encode(frames.MORE, sid, consumed))
                    consumed = 0
        finally:
            del self._streams[sid]
            # A consumer that stops at the response usually leaves the host's END queued
            # behind it (both came in one read): the stream is over, nothing to cancel.
            while not ended and not queue.empty():
                ended = queue.get_nowait() in (_END, _LOST)
            if not ended and not writer.is_closing():
                writer.write(frames.encode(frames.CANCEL, sid))

    async def deliver(self, server: str, caller: Caller, message: Message) -> None:
        writer = await self._connection()
        who = [caller.session, caller.principal, caller.endpoint]
        writer.write(frames.encode(frames.DELIVER, 0, server, who, message))
        await writer.drain()
