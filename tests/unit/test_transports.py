"""Writes to a STDIO server have a deadline (mcpctl/mcp/transports.py), on a channel played by
the test: a write that misses it stays queued, nothing more is queued behind it (later writes
fail with Stalled having written nothing), and writes go again once the server reads."""

from __future__ import annotations

import asyncio

import pytest

from mcpctl.mcp import jsonrpc
from mcpctl.mcp.transports import Stalled, StdioTransport
from mcpctl.orchestrators.base import Channel

NOTE = jsonrpc.notification("notifications/roots/list_changed")


class Pipe(Channel):
    """Writes are taken at once (kept in `written`) but return only while the server reads,
    as a pipe's writes drain."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.reading = asyncio.Event()

    async def write(self, data: bytes) -> None:
        self.written.append(data)
        await self.reading.wait()

    async def readline(self) -> bytes:
        return b""

    async def close(self) -> None:
        pass


async def test_a_server_that_does_not_read_holds_one_write_and_no_writer_waits_longer() -> None:
    pipe = Pipe()
    transport = StdioTransport(pipe, write_timeout=0.05)
    await transport.send(NOTE)  # misses its deadline: queued, it goes when the server reads
    await asyncio.sleep(0)
    assert pipe.written == [jsonrpc.dumps(NOTE) + b"\n", b""]  # b"": waits for it to go
    for _ in range(3):
        with pytest.raises(Stalled, match=r"has not read its input for 0\.05 s"):
            await asyncio.wait_for(transport.send(NOTE), 1)
    assert len(pipe.written) == 2  # nothing more was written
    pipe.reading.set()
    await transport.send(NOTE)
    assert pipe.written[-1] == jsonrpc.dumps(NOTE) + b"\n"
    await transport.close()
