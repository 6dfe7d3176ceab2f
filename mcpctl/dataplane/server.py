"""The host's end: serves gateways on a Unix socket (same node) and on TCP at the node's
address (other nodes); every connection starts with the cluster token.

Until it has shown the token, a connection costs the host almost nothing: its hello is read
with a frame limit of a few hundred bytes and a deadline of a few seconds, each listener
greets a few connections at a time (more are closed at once), and a connection whose hello is
missing, malformed or wrong is closed quietly and counted in `refused` (logged at most once a
minute).

Each CALL or LISTEN becomes a task that pumps the backend's stream into ITEM frames, sending
no more than the credit the gateway granted (a slow client slows its own stream only; the
multiplexer's bounded queue does the rest). CANCEL, or the connection closing, cancels the
task, and with it the request at the backend. A CALL whose serving fails before its response
ends with an error response that says so, never with silence. A DELIVER is queued for its
backend (see deliveries): nothing waits for a backend in the loop that reads the connection,
so CANCEL and MORE, and every other backend's traffic, never queue behind a slow one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mcpctl.dataplane import frames
from mcpctl.dataplane.deliveries import Deliveries
from mcpctl.mcp import jsonrpc
from mcpctl.mcp.caller import Caller
from mcpctl.mcp.jsonrpc import Message

log = logging.getLogger(__name__)
HELLO_TIMEOUT = 3.0  # seconds a new connection has to show the token
MAX_GREETING = 8  # connections per listener that have not shown it yet; more are closed
REFUSAL_LOG_INTERVAL = 60.0  # seconds between log lines about refused connections


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
        self.deliveries = Deliveries(backend.deliver)
        self.refused: Counter[str] = Counter()  # connections closed before the token, by why
        self._greeting: Counter[str] = Counter()  # per listener, connections before the token
        self._refusal_logged = -REFUSAL_LOG_INTERVAL

    async def start(self) -> dict[str, Any]:
        """Listen; return where: {"unix": path} and, with a TCP host, {"tcp": [host, port]}."""
        if self.address:
            return self.address
        self._directory = tempfile.mkdtemp(prefix="mcpd-dp-")  # 0700: only mcpd's user
        path = os.path.join(self._directory, "host.sock")
        serve_unix = functools.partial(self._serve, "unix")
        self._servers.append(await asyncio.start_unix_server(serve_unix, path, limit=2**16))
        address: dict[str, Any] = {"unix": path}
        if self.tcp_host:
            serve_tcp = functools.partial(self._serve, "tcp")
            server = await asyncio.start_server(serve_tcp, self.tcp_host, 0, limit=2**16)
            self._servers.append(server)
            address["tcp"] = [self.tcp_host, server.sockets[0].getsockname()[1]]
        self.address = address
        return address

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        await self.deliveries.close()
        if self._directory:
            with contextlib.suppress(OSError):
                Path(self._directory, "host.sock").unlink()
                os.rmdir(self._directory)

    async def _serve(
        self, listener: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        streams: dict[int, _Stream] = {}
        try:
            if self._greeting[listener] >= MAX_GREETING:
                self._refuse("too_many_unauthenticated", writer)
                return
            self._greeting[listener] += 1
            try:
                refusal = await self._hello(reader)
            finally:
                self._greeting[listener] -= 1
            if refusal is not None:
                self._refuse(refusal, writer)
                return
            while (frame := await frames.read_frame(reader)) is not None:
                self._handle(frame, streams, writer)
        except (frames.FrameError, ConnectionError) as error:
            log.info("a data-plane connection ended: %s", error)
        finally:
            for stream in streams.values():
                if stream.task is not None:
                    stream.task.cancel()
            writer.close()

    async def _hello(self, reader: asyncio.StreamReader) -> str | None:
        """None when the connection shows the cluster token, else why not."""
        try:
            async with asyncio.timeout(HELLO_TIMEOUT):
                hello = await frames.read_frame(reader, frames.MAX_HELLO)
        except TimeoutError:
            return "hello_timeout"
        except frames.FrameError:
            return "hello_malformed"
        if hello is None:
            return "closed_before_hello"
        token = hello[1]
        if hello[0] != frames.HELLO or not isinstance(token, str) or not token.isascii():
            return "hello_malformed"
        if not hmac.compare_digest(token, self.token):
            return "wrong_token"
        return None

    def _refuse(self, reason: str, writer: asyncio.StreamWriter) -> None:
        self.refused[reason] += 1
        now = time.monotonic()
        if now - self._refusal_logged >= REFUSAL_LOG_INTERVAL:
            self._refusal_logged = now
            peer = writer.get_extra_info("peername") or "the Unix socket"
            log.warning(
                "refused a data-plane connection from %s (%s); refused so far: %s",
                peer, reason, dict(self.refused),
            )  # fmt: skip

    def _handle(
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
            self.deliveries.offer(frame[2], Caller(*frame[3]), frame[4])
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
