"""Message transports to a backend server: newline-delimited JSON over a STDIO channel."""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod

from mcpctl.mcp.jsonrpc import Message
from mcpctl.orchestrators.base import Channel

log = logging.getLogger(__name__)


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
        await self.channel.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    async def receive(self) -> Message | None:
        while True:
            line = await self.channel.readline()
            if not line:
                return None
            line = line.strip()
            if not line:
                continue
            try:
                message = json.loads(line)
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
