"""The host's end: serves gateways on a Unix socket (same node) and on TCP at the node's
address (other nodes); every connection starts with the cluster token.

Each CALL or LISTEN becomes a task that pumps the backend's stream into ITEM frames, sending
no more than the credit the gateway granted (a slow client slows its own stream only; the
multiplexer's bounded queue does the rest). CANCEL, or the connection closing, cancels the
task, and with it the request at the backend. A CALL whose serving fails before its response
ends with an error response that says so, never with silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import tempfile
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mcpctl.dataplane import frames
from mcpctl.mcp import jsonrpc
from mcpctl.mcp.caller import Caller
from mcpctl.mcp.jsonrpc import Message

log = logging.getLogger(__name__)


class Backend(Protocol):
    """What a host offers the data plane."""

    def exchange(
        self, server: str, caller: Caller, message: Message
    ) -> AsyncGenerator[Message, None]: ...

    async def deliver(self, server: str, caller: Caller, message: Message) -> None: ...

    def listen(self, server: str, caller: Caller) -> AsyncGenerator[Message, None]: ...


@dataclass(eq=False)
class _Stream:
    task: asyncio.Task[None] | None = None
    credit: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(frames.WINDOW))


class StreamServer:
    def __init__(self, backend: Backend, token: str, tcp_host: str | None = None) -> None:
        self.backend = backend
        self.token = token
        self.tcp_host = tcp_host
        self._servers: list[asyncio.Server] = []
        self._directory: str | None = None
        self.address: dict[str, Any] = {}

    async def start(self) -> dict[str, Any]:
        """Listen; return where: {"unix": path} and, with a TCP host, {"tcp": [host, port]}."""
        if self.address:
            return self.address
        self._directory = tempfile.mkdtemp(prefix="mcpd-dp-")  # 0700: only mcpd's user
        path = os.path.join(self._directory, "host.sock")
        self._servers.append(await asyncio.start_unix_server(self._serve, path, limit=2**16))
        address: dict[str, Any] = {"unix": path}
        if self.tcp_host:
            server = await asyncio.start_server(self._serve, self.tcp_host, 0)
            self._servers.append(server)
            address["tcp"] = [self.tcp_host, server.sockets[0].getsockname()[1]]
        self.address = address
        return address

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        if self._directory:
            with contextlib.suppress(OSError):
                Path(self._directory, "host.sock").unlink()
                os.rmdir(self._directory)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        streams: dict[int, _Stream] = {}
        try:
            hello = await asyncio.wait_for(frames.read_frame(reader), 10)
            if not (
                hello
                and hello[0] == frames.HELLO
                and isinstance(hello[1], str)
                and hmac.compare_digest(hello[1], self.token)
            ):
                log.warning("refused a data-plane connection without the cluster token")
                return
            while (frame := await frames.read_frame(reader)) is not None:
                await self._handle(frame, streams, writer)
        except (TimeoutError, frames.FrameError, ConnectionError) as error:
            log.info("a data-plane connection ended: %s", error)
        finally:
            for stream in streams.values():
                if stream.task is not None:
                    stream.task.cancel()
            writer.close()

    async def _handle(
        self, frame: list[Any], streams: dict[int, _Stream], writer: asyncio.StreamWriter
    ) -> None:
        kind, sid = frame[0], frame[1]
        if kind in (frames.CALL, frames.LISTEN):
            server, caller = frame[2], Caller(*frame[3])
            request = frame[4] if kind == frames.CALL else None
            if request is not None:
                source = self.backend.exchange(server, caller, request)
            else:
                source = self.backend.listen(server, caller)
            stream = streams[sid] = _Stream()
            stream.task = asyncio.get_running_loop().create_task(
                self._pump(sid, source, stream, streams, writer, server, request)
            )
        elif kind == frames.MORE:
            if sid in streams:
                for _ in range(int(frame[2])):
                    streams[sid].credit.release()
        elif kind == frames.CANCEL:
            ending = streams.pop(sid, None)
            if ending is not None and ending.task is not None:
                ending.task.cancel()
        elif kind == frames.DELIVER:
            try:
                await self.backend.deliver(frame[2], Caller(*frame[3]), frame[4])
            except Exception:  # one client's message never ends the connection of all
                log.exception("delivering a client message to %s failed", frame[2])
        else:
            raise frames.FrameError(f"unknown frame kind {kind!r}")

    async def _pump(
        self,
        sid: int,
        source: AsyncGenerator[Message, None],
        stream: _Stream,
        streams: dict[int, _Stream],
        writer: asyncio.StreamWriter,
        server: str,
        request: Message | None,  # a CALL's; None for a LISTEN
    ) -> None:
        answered = False
        try:
            async for item in source:
                await stream.credit.acquire()
                writer.write(frames.encode(frames.ITEM, sid, item))
                await writer.drain()
                answered = answered or jsonrpc.is_response(item)
            writer.write(frames.encode(frames.END, sid))
            await writer.drain()
        except Exception as error:
            if writer.is_closing():
                return  # the gateway's connection ended: nobody to tell
            log.exception("data-plane stream %d failed", sid)
            with contextlib.suppress(ConnectionError):
                if not answered and request is not None:
                    # A request is never left without an answer: the client hears what failed.
                    await stream.credit.acquire()
                    writer.write(frames.encode(frames.ITEM, sid, _failed(server, request, error)))
                writer.write(frames.encode(frames.END, sid))
        finally:
            streams.pop(sid, None)
            await source.aclose()


def _failed(server: str, request: Message, error: Exception) -> Message:
    """The answer to a request whose serving failed before its response."""
    text = (
        f"server {server}: mcpd failed while serving {request.get('method')} "
        f"({type(error).__name__}: {error}); it may or may not have run"
    )
    return jsonrpc.error(request.get("id"), jsonrpc.INTERNAL_ERROR, text)
