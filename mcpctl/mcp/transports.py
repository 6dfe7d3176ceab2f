"""Message transports to a backend server: newline-delimited JSON over a STDIO channel.

A write has a deadline. One that misses it stays queued in the channel (it goes when the
server reads again); until it has gone, nothing more is queued behind it: each later write
waits up to the deadline for it, then fails with Stalled, having written nothing. So a server
that stops reading its input holds at most one message of mcpd's memory, and no writer waits
for it longer than the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from abc import ABC, abstractmethod

import orjson

from mcpctl.mcp import jsonrpc
from mcpctl.mcp.jsonrpc import Message
from mcpctl.orchestrators.base import MAX_LINE_BYTES, Channel, LineTooLong

log = logging.getLogger(__name__)
# The id of a response, near its start as servers write them: {"jsonrpc":"2.0","id":7,...
RESPONSE_ID = re.compile(rb'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")\s*,\s*"(?:result|error)"')
WRITE_TIMEOUT = 10.0  # seconds a write to a server may wait for it to read


class Stalled(Exception):
    """The server has not read what it was sent for the write deadline: nothing was written.
    (Not an OSError: the server is still there, and may read again.)"""


class Transport(ABC):
    @abstractmethod
    async def send(self, message: Message) -> None: ...

    @abstractmethod
    async def receive(self) -> Message | None:
        """The next message from the server, or None when the connection ended."""

    @abstractmethod
    async def close(self) -> None: ...


class StdioTransport(Transport):
    def __init__(self, channel: Channel, write_timeout: float | None = None) -> None:
        self.channel = channel
        self.write_timeout = WRITE_TIMEOUT if write_timeout is None else write_timeout
        self._backlog: asyncio.Task[None] | None = None  # a write that missed its deadline

    async def send(self, message: Message) -> None:
        data = jsonrpc.dumps(message) + b"\n"
        writing = False
        try:
            async with asyncio.timeout(self.write_timeout):
                if self._backlog is not None:
                    await self._drained(self._backlog)
                writing = True
                await self.channel.write(data)
        except TimeoutError:
            if not writing:
                text = f"the server has not read its input for {self.write_timeout:g} s"
                raise Stalled(text) from None
            # What was written stays queued in the channel (a pipe's buffer, the websocket's
            # send lock) and goes when the server reads again; an empty write returns then.
            if self._backlog is None:
                self._backlog = asyncio.get_running_loop().create_task(self.channel.write(b""))
                self._backlog.add_done_callback(lambda done: done.cancelled() or done.exception())
                log.warning("a server has not read its input for %g s", self.write_timeout)

    async def _drained(self, backlog: asyncio.Task[None]) -> None:
        """Until the write that missed its deadline has gone (or the channel broke: the write
        that follows says so)."""
        with contextlib.suppress(OSError):
            await asyncio.shield(backlog)
        if self._backlog is backlog:
            self._backlog = None

    async def receive(self) -> Message | None:
        while True:
            try:
                line = await self.channel.readline()
            except LineTooLong as error:
                refusal = _refusal(error.prefix)
                if refusal is not None:
                    return refusal
                log.warning("skipped a message over %d bytes from the server", MAX_LINE_BYTES)
                continue
            if not line:
                return None
            line = line.strip()
            if not line:
                continue
            try:
                message = _loads(line)
            except ValueError:
                # Some servers print banners on stdout; they are not protocol.
                log.debug("ignoring non-JSON line from server: %.200r", line)
                continue
            if isinstance(message, dict):
                return message
            if isinstance(message, list):  # a batch (2025-03-26): unlikely from a server
                log.debug("ignoring a JSON-RPC batch from a server")

    async def close(self) -> None:
        if self._backlog is not None:
            self._backlog.cancel()
        await self.channel.close()


def _refusal(prefix: bytes) -> Message | None:
    """The error that answers a response too large to read, when its start names its id."""
    found = RESPONSE_ID.search(prefix)
    if found is None:
        return None
    return jsonrpc.error(
        json.loads(found.group(1)),
        jsonrpc.INTERNAL_ERROR,
        f"the server's response is larger than {MAX_LINE_BYTES // 1024**2} MiB "
        "(the message size limit); it was dropped",
    )


def _loads(line: bytes) -> object:
    """JSON fast; what orjson refuses (NaN, huge integers) the standard way."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)
