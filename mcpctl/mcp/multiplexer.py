"""Many clients over one backend session: id remapping and routing of what the server sends.

Requests get backend ids from one counter and map back on the way out; progress tokens are
remapped the same way, so two clients may use the same token. A server->client request goes
to the client whose request is in flight (the oldest, when several are), else to a client
that listens. When the backend is replaced, requests still in flight are sent again to the
new session (DESIGN: a restart is invisible where the protocol allows it).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from mcpctl.mcp import jsonrpc
from mcpctl.mcp.jsonrpc import Message
from mcpctl.mcp.transports import Transport

log = logging.getLogger(__name__)
BROADCAST_NOTIFICATIONS = (
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
    "notifications/resources/updated",
)


@dataclass
class _Exchange:
    client: str
    client_id: Any
    request: Message  # as sent to the backend, for a replay
    progress_token: Any
    queue: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)


class BackendUnavailable(RuntimeError):
    pass


class Multiplexer:
    def __init__(self, name: str, attach_timeout: float = 30.0) -> None:
        self.name = name
        self.attach_timeout = attach_timeout
        self._transport: Transport | None = None
        self._attached = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, _Exchange] = {}
        self._progress: dict[str, _Exchange] = {}
        self._server_requests: dict[str, tuple[Any, str]] = {}
        self._listeners: dict[str, asyncio.Queue[Message]] = {}
        self.lost = asyncio.Event()  # set when the attached backend's stream ends

    @property
    def attached(self) -> bool:
        return self._attached.is_set()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def attach(self, transport: Transport) -> None:
        """Serve through this (initialized) transport; resend what was in flight."""
        self._transport = transport
        self.lost.clear()
        self._reader = asyncio.get_running_loop().create_task(self._read(transport))
        for exchange in list(self._pending.values()):
            with contextlib.suppress(OSError, BackendUnavailable):
                await self._send(exchange.request)
        self._attached.set()

    async def detach(self) -> None:
        self._attached.clear()
        self._transport = None
        self._server_requests.clear()
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._reader = None

    async def close(self, reason: str) -> None:
        """No backend will come back: fail everything in flight."""
        await self.detach()
        for backend_id, exchange in list(self._pending.items()):
            exchange.queue.put_nowait(
                jsonrpc.error(exchange.client_id, jsonrpc.BACKEND_UNAVAILABLE, reason)
            )
            self._pending.pop(backend_id, None)

    async def _send(self, message: Message) -> None:
        if self._transport is None:
            raise BackendUnavailable(f"{self.name}: no backend session")
        await self._transport.send(message)

    async def exchange(self, client: str, message: Message) -> AsyncGenerator[Message, None]:
        """Send one client request; yield what the server sends for it, ending with the response."""
        try:
            await asyncio.wait_for(self._attached.wait(), self.attach_timeout)
        except TimeoutError:
            yield jsonrpc.error(
                message.get("id"), jsonrpc.BACKEND_UNAVAILABLE, f"{self.name} is not running"
            )
            return
        backend_id = next(self._ids)
        request = {**message, "id": backend_id}
        token = jsonrpc.progress_token(message)
        exchange = _Exchange(client, message.get("id"), request, token)
        if token is not None:
            backend_token = f"{backend_id}"
            params = dict(request["params"])
            params["_meta"] = {**params["_meta"], "progressToken": backend_token}
            request["params"] = params
            self._progress[backend_token] = exchange
        self._pending[backend_id] = exchange
        answered = False
        try:
            # If the backend just went away, this request is resent to the next one.
            with contextlib.suppress(OSError, BackendUnavailable):
                await self._send(request)
            while True:
                item = await exchange.queue.get()
                answered = jsonrpc.is_response(item) and item.get("id") == exchange.client_id
                yield item
                if answered:
                    return
        finally:
            self._pending.pop(backend_id, None)
            if token is not None:
                self._progress.pop(f"{backend_id}", None)
            if not answered and self._transport is not None:
                # The client went away: tell the server to stop working on it.
                cancel = jsonrpc.notification(
                    "notifications/cancelled", {"requestId": backend_id, "reason": "client gone"}
                )
                with contextlib.suppress(Exception):
                    await self._send(cancel)

    async def deliver(self, client: str, message: Message) -> None:
        """A notification, or a response to a server->client request, from a client."""
        if jsonrpc.is_response(message):
            target = self._server_requests.pop(str(message["id"]), None)
            if target is None or target[1] != client:
                return  # unknown, or not this client's to answer: dropped
            await self._send({**message, "id": target[0]})
            return
        method = message.get("method")
        if method == "notifications/initialized":
            return  # the replica did the handshake with the backend itself
        if method == "notifications/cancelled":
            params = message.get("params") or {}
            for backend_id, exchange in self._pending.items():
                if exchange.client == client and exchange.client_id == params.get("requestId"):
                    await self._send({**message, "params": {**params, "requestId": backend_id}})
            return
        await self._send(message)

    async def listen(self, client: str) -> AsyncGenerator[Message, None]:
        """Messages for `client` outside any request of its: list changes, server requests."""
        queue: asyncio.Queue[Message] = asyncio.Queue()
        self._listeners[client] = queue
        try:
            while True:
                yield await queue.get()
        finally:
            if self._listeners.get(client) is queue:
                del self._listeners[client]

    async def _read(self, transport: Transport) -> None:
        try:
            while (message := await transport.receive()) is not None:
                await self._route(message)
        except Exception:
            log.exception("%s: reading from the backend failed", self.name)
        if self._transport is transport:
            self._attached.clear()
            self.lost.set()

    async def _route(self, message: Message) -> None:
        if jsonrpc.is_response(message):
            exchange = self._pending.get(message["id"]) if isinstance(message["id"], int) else None
            if exchange is not None:
                exchange.queue.put_nowait({**message, "id": exchange.client_id})
            return
        if jsonrpc.is_request(message):
            await self._server_request(message)
            return
        method = message.get("method", "")
        if method == "notifications/progress":
            params = message.get("params") or {}
            exchange = self._progress.get(str(params.get("progressToken")))
            if exchange is not None:
                params = {**params, "progressToken": exchange.progress_token}
                exchange.queue.put_nowait({**message, "params": params})
            return
        if method in BROADCAST_NOTIFICATIONS:
            for queue in self._listeners.values():
                queue.put_nowait(message)
            return
        owner = self._owner()
        if owner is not None:
            owner.queue.put_nowait(message)
        else:
            for queue in self._listeners.values():
                queue.put_nowait(message)

    def _owner(self) -> _Exchange | None:
        return next(iter(self._pending.values()), None)

    async def _server_request(self, message: Message) -> None:
        if message.get("method") == "ping":
            await self._send(jsonrpc.result(message["id"], {}))
            return
        owner = self._owner()
        client = owner.client if owner else next(reversed(self._listeners), None)
        if client is None:
            await self._send(
                jsonrpc.error(message["id"], jsonrpc.METHOD_NOT_FOUND, "no client is connected")
            )
            return
        visible_id = f"mcpd-{next(self._ids)}"
        self._server_requests[visible_id] = (message["id"], client)
        forwarded = {**message, "id": visible_id}
        if owner is not None:
            owner.queue.put_nowait(forwarded)
        else:
            self._listeners[client].put_nowait(forwarded)
