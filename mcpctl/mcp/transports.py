"""Message transports to a backend server: newline-delimited JSON over a STDIO channel."""

from __future__ import annotations

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


class Transport(ABC):
    @abstractmethod
    async def send(self, message: Message) -> None: ...

    @abstractmethod
    async def receive(self) -> Message | None:
        """The next message from the server, or None when the connection ended."""

    @abstractmethod
    async def close(self) -> None: ...


class StdioTransport(Transport):
    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    async def send(self, message: Message) -> None:
        await self.channel.write(jsonrpc.dumps(message) + b"\n")

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
