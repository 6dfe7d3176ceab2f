"""uvicorn's h11 protocol with read deadlines (DESIGN: everything is bounded).

uvicorn closes a keep-alive connection that stays idle after a response, but a connection
that sends nothing, half a request head, or stops in the middle of a body is held open for as
long as the client likes: a few hundred such sockets, unauthenticated, pin the gateway. Here a
request head must arrive whole within `read_timeout` seconds of its first byte (or of the
connection), and a body may not pause longer than that between chunks; otherwise the
connection is closed.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class BoundedH11Protocol(H11Protocol):
    read_timeout: float = 10.0

    _deadline: asyncio.TimerHandle | None = None
    _waiting_for: type[h11.IDLE] | type[h11.SEND_BODY] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_reads()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_reads()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _watch_reads(self) -> None:
        """Arm, keep or drop the deadline for what the connection waits for from the client."""
        state = self.conn.their_state
        if self.transport.is_closing() or state not in (h11.IDLE, h11.SEND_BODY):
            self._disarm()
        elif state is h11.IDLE:
            # A request head: one deadline from its start, however slowly it trickles in. An
            # idle keep-alive connection is uvicorn's (timeout_keep_alive).
            if self._waiting_for is not h11.IDLE:
                self._arm(h11.IDLE)
        else:
            self._arm(h11.SEND_BODY)  # a body: the deadline restarts with every chunk

    def _arm(self, waiting_for: type[h11.IDLE] | type[h11.SEND_BODY]) -> None:
        self._disarm()
        self._waiting_for = waiting_for
        self._deadline = self.loop.call_later(self.read_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._waiting_for = None

    def _timed_out(self) -> None:
        waiting_for = self._waiting_for
        self._deadline = None
        self._waiting_for = None
        if waiting_for is None or self.transport.is_closing():
            return
        if self.flow.read_paused:  # the app is slow to read, not the client to send
            self._arm(waiting_for)
            return
        self.transport.close()


def bounded_h11(read_timeout: float) -> type[BoundedH11Protocol]:
    """The protocol class for uvicorn.Config(http=...), with this deadline."""
    return type("BoundedH11Protocol", (BoundedH11Protocol,), {"read_timeout": read_timeout})
