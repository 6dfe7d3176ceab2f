"""uvicorn's httptools protocol (a C parser: the MCP hot path spends a third less CPU than
with pure-Python h11) with read deadlines and a bounded head (DESIGN: everything is bounded).

uvicorn closes a keep-alive connection that stays idle after a response, but a connection
that sends nothing, half a request head, or stops in the middle of a body is held open for as
long as the client likes: a few hundred such sockets, unauthenticated, pin the gateway. Here a
request head must arrive whole within `read_timeout` seconds of its first byte (or of the
connection), and a body may not pause longer than that between chunks; otherwise the
connection is closed. A head over `max_head_bytes` is answered 400 and the connection closed.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    read_timeout: float = 10.0
    max_head_bytes: int = 64 * 1024

    _deadline: asyncio.TimerHandle | None = None
    _head_bytes = 0
    _in_head = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # the first request head

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0
        if self._deadline is None:
            self._arm()  # one deadline from the head's first byte, however slowly it trickles

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()
        self._arm()  # a body, if any: the deadline restarts with every chunk

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._in_head and self._head_bytes > self.max_head_bytes:
            # Raised in a parser callback, it stops the parse: uvicorn answers 400 and closes.
            raise ValueError(f"request head larger than {self.max_head_bytes} bytes")

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # the app is slow to read, not the client to send
            self._arm()
            return
        self.transport.close()


def bounded_http(read_timeout: float, max_head_bytes: int) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for uvicorn.Config(http=...), with these bounds."""
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {"read_timeout": read_timeout, "max_head_bytes": max_head_bytes},
    )
