"""A STDIO session over the API server's exec/attach websocket, as a `Channel`.

The official client is blocking, so one thread per session reads the socket and hands lines
to the event loop; writes go through a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Executor
from typing import Any

from mcpctl.orchestrators.base import MAX_LINE_BYTES, Channel, LineTooLong

READ_TIMEOUT = 1.0


class WebSocketChannel(Channel):
    def __init__(self, ws: Any, loop: asyncio.AbstractEventLoop, executor: Executor) -> None:
        self._ws = ws
        self._loop = loop
        self._executor = executor
        self._lines: asyncio.Queue[bytes | LineTooLong] = asyncio.Queue()
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._pump, name="k8s-stream", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        pending = b""
        skipping = False  # inside a line over the limit, reported already
        try:
            while not self._closed.is_set() and self._ws.is_open():
                self._ws.update(timeout=READ_TIMEOUT)
                if not self._ws.peek_stdout():
                    continue
                data = self._ws.read_stdout()
                pending += data.encode() if isinstance(data, str) else data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if skipping:
                        skipping = False
                        continue
                    self._loop.call_soon_threadsafe(self._lines.put_nowait, line + b"\n")
                if len(pending) > MAX_LINE_BYTES:
                    if not skipping:
                        too_long = LineTooLong(pending[:256])
                        self._loop.call_soon_threadsafe(self._lines.put_nowait, too_long)
                    pending, skipping = b"", True
        except Exception:  # the stream broke: the session ends like an EOF
            pass
        finally:
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                self._loop.call_soon_threadsafe(self._lines.put_nowait, b"")

    async def readline(self) -> bytes:
        line = await self._lines.get()
        if isinstance(line, LineTooLong):
            raise line
        if not line:
            self._lines.put_nowait(b"")  # stay at EOF for later readers
        return line

    async def write(self, data: bytes) -> None:
        if not self._ws.is_open():
            raise ConnectionError("the exec/attach stream is closed")
        try:
            await self._loop.run_in_executor(self._executor, self._ws.write_stdin, data.decode())
        except Exception as error:  # websocket-client's own exceptions: the stream broke
            raise ConnectionError(f"the exec/attach stream broke: {error}") from error

    async def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(Exception):
            await self._loop.run_in_executor(self._executor, self._ws.close)
