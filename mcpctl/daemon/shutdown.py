"""mcpd's stop in bounded time (DESIGN: everything is bounded, shutdown included).

On SIGTERM uvicorn stops accepting connections, closes the idle ones and waits for the others
to finish their response. Alone it would wait forever: an SSE stream (GET) never ends by
itself, and an MCP request may wait on a backend that never answers. `ShutdownGate` wraps the
app so that, once the stop began, a GET request sees its client leave at once, and any other
request gets `grace` seconds to finish before it sees its client leave too: the MCP endpoint
then cancels it at the backend, and a client that got no answer yet gets a JSON-RPC error
(503). uvicorn's own graceful timeout, a little later, is the backstop. Requests that reach
the app after the stop began carry `shutting_down` in their state: `/readyz` answers 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BACKSTOP_SECONDS = 2.0  # after the grace: what the gate could not end, uvicorn cancels
ID_BYTES = 1024 * 1024  # bodies up to this size are kept to find the JSON-RPC id to answer
DISCONNECT: Message = {"type": "http.disconnect"}


class ShutdownGate:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Futures, not Events: a request races its receive against one of them without a
        # task of its own (the hot path pays one task per request, not three).
        self._stopping: asyncio.Future[None] | None = None  # streams end
        self._expired: asyncio.Future[None] | None = None  # everything else ends

    def _gates(self) -> tuple[asyncio.Future[None], asyncio.Future[None]]:
        if self._stopping is None or self._expired is None:
            loop = asyncio.get_running_loop()
            self._stopping, self._expired = loop.create_future(), loop.create_future()
        return self._stopping, self._expired

    def begin(self, grace: float) -> None:
        stopping, expired = self._gates()
        _open(stopping)
        asyncio.get_running_loop().call_later(grace, _open, expired)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        stopping, expired = self._gates()
        if stopping.done():  # /readyz answers 503 from now on (gateway/health.py)
            scope.setdefault("state", {})["shutting_down"] = True
        request = _Request(stopping if scope["method"] == "GET" else expired, receive)
        response = _Response(send)
        try:
            await self.app(scope, request.receive, response.send)
        except (asyncio.CancelledError, Exception):
            task = asyncio.current_task()
            if not request.cut or (task is not None and task.cancelling()):
                raise  # a real error, or uvicorn's own cancellation
        if request.cut and not response.started:
            await response.refuse(request.jsonrpc_id())
        elif request.cut and not response.completed:
            await response.send({"type": "http.response.body", "body": b"", "more_body": False})


class _Request:
    """The request's receive: the body passes through; after it, a wait for the client to
    leave also ends when `stop` is set (the client is then told it left)."""

    def __init__(self, stop: asyncio.Future[None], receive: Receive) -> None:
        self.stop = stop
        self._receive = receive
        self.body = bytearray()
        self.body_done = False
        self.cut = False

    async def receive(self) -> Message:
        if not self.body_done:
            message = await self._receive()
            if message["type"] == "http.request":
                if len(self.body) <= ID_BYTES:
                    self.body += message.get("body", b"")
                self.body_done = not message.get("more_body", False)
            return message
        if not self.stop.done():
            received = asyncio.ensure_future(self._receive())
            try:
                either: set[asyncio.Future[Any]] = {received, self.stop}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not received.done():
                    received.cancel()
            if received.done() and not received.cancelled():
                return received.result()
        self.cut = True
        return DISCONNECT

    def jsonrpc_id(self) -> Any:
        if len(self.body) > ID_BYTES:
            return None
        try:
            message = json.loads(self.body)
        except ValueError:
            return None
        return message.get("id") if isinstance(message, dict) else None


def _open(gate: asyncio.Future[None]) -> None:
    if not gate.done():
        gate.set_result(None)


class _Response:
    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.completed = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.completed = True
        await self._send(message)

    async def refuse(self, request_id: Any) -> None:
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "error": {
                    "code": -32603,
                    "message": "mcpd is shutting down: the request was cancelled "
                    "(it may or may not have run)",
                },
            }
        ).encode()
        await self.send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


class GracefulServer(uvicorn.Server):
    """mcpd's main server: its stop opens the gate's grace period and stops `others`."""

    def __init__(
        self,
        config: uvicorn.Config,
        gate: ShutdownGate,
        grace: float,
        others: list[uvicorn.Server],
    ) -> None:
        super().__init__(config)
        self.gate = gate
        self.grace = grace
        self.others = others

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """As uvicorn's, without raising the signal again once stopped: a stop that drained
        is a success (exit 0), which systemd, make and Kubernetes read as one; uvicorn's
        re-raise made mcpd die of its SIGTERM (exit status 143)."""
        with super().capture_signals():
            yield
            getattr(self, "_captured_signals", []).clear()

    async def shutdown(self, sockets: Any = None) -> None:
        self.gate.begin(self.grace)
        for other in self.others:
            other.should_exit = True
        await super().shutdown(sockets)


class SecondaryServer(uvicorn.Server):
    """Another server in mcpd's process (the metrics port): it leaves signals to the main
    server, which stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_all(main: uvicorn.Server, others: list[uvicorn.Server]) -> None:
    tasks = [asyncio.create_task(other.serve()) for other in others]
    try:
        await main.serve()
    finally:
        for other in others:
            other.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
