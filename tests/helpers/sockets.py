"""Raw connections to a data-plane listener, as a hostile client makes them: what it sends
first, and whether the other side closed it."""

from __future__ import annotations

import asyncio
import contextlib

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]  # the writer kept: not closed
CHUNK = bytes(2**20)


async def send(address: tuple[str, int], data: bytes, body: int = 0) -> Connection:
    """A connection that sends `data`, then `body` more bytes as fast as they are taken (until
    the other side closes it)."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(data)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
        for _ in range(body // len(CHUNK)):
            writer.write(CHUNK)
            await writer.drain()
    return reader, writer


async def closed_by_host(connection: Connection, within: float) -> bool:
    """The other side closed the connection (EOF or reset) within `within` seconds; the
    connection is closed afterwards either way."""
    reader, writer = connection
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    finally:
        writer.close()
    return True
