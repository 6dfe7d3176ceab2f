"""Many clients over one backend session: id remapping, and routing of what the server sends
so that it reaches only the client it belongs to.

Requests get backend ids from one counter and map back on the way out; progress tokens are
remapped the same way, so two clients may use the same token. What the server sends on its
own (a question such as sampling, a log line) goes to the request it belongs to when the
server says so (a progress token); otherwise only to a tenant (principal and endpoint) that
is alone in having requests in flight, else to nobody: the question is refused, the
notification dropped, and both counted (DESIGN: tenants never meet).

When the backend is replaced, only requests that cannot change anything are sent again;
every other request in flight fails with "may or may not have run" (DESIGN: no repeated
side effects). A backend that can no longer be written to is gone, even while its output
has not ended: a request that could not be written to it waits for the next one. A request
whose client went away, cancelled it or ran out of time is removed at once and the backend
is told `notifications/cancelled`. A backend that stops reading its input (writes to it have a
deadline, see transports) fails the requests that could not be written to it, at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from mcpctl.mcp import jsonrpc, list_cache, log_levels
from mcpctl.mcp.caller import Caller
from mcpctl.mcp.jsonrpc import Message
from mcpctl.mcp.transports import Stalled, Transport

log = logging.getLogger(__name__)
LIST_CHANGED = (
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
)
# Requests that change nothing, so a replacement backend may be asked again.
READ_ONLY = frozenset(
    {
        "ping",
        "tools/list",
        "prompts/list",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "prompts/get",
        "completion/complete",
    }
)
MAX_SENDS = 2  # a read-only request that took down two backends is not sent a third time
MAX_QUEUED = 1000  # messages waiting for one slow client; more are dropped (and counted)
MAX_OPEN_QUESTIONS = 1000  # server->client requests waiting for an answer
FORWARDED_NOTIFICATIONS = frozenset({"notifications/roots/list_changed"})


@dataclass(eq=False)
class _Exchange:
    caller: Caller
    client_id: Any
    request: Message  # as sent to the backend, for a resend
    progress_token: Any
    read_only: bool
    queue: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    sends: int = 0
    questions: set[str] = field(default_factory=set)  # server requests it was asked
    log_level: str | None = None  # a 2026-07-28 request's own (it gets no log lines without)


@dataclass(eq=False)
class _Listener:
    caller: Caller
    queue: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)


@dataclass(frozen=True)
class _Question:
    backend_id: Any
    session: str
    exchange: _Exchange | None


class BackendUnavailable(RuntimeError):
    pass


class Multiplexer:
    def __init__(
        self, name: str, attach_timeout: float = 30.0, request_timeout: float = 300.0
    ) -> None:
        self.name = name
        self.attach_timeout = attach_timeout
        self.request_timeout = request_timeout
        self._transport: Transport | None = None
        self._attached = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, _Exchange] = {}
        self._progress: dict[str, _Exchange] = {}
        self._questions: dict[str, _Question] = {}
        self._listeners: dict[str, _Listener] = {}
        self._subscriptions: dict[str, set[str]] = {}  # resource URI -> sessions
        self._session_levels = log_levels.SessionLevels()  # 2025-era clients' logging/setLevel
        self._backend_level: str | None = None  # what mcpd last set at the backend
        self.lists = list_cache.ListCache()
        self.dropped: Counter[str] = Counter()  # undeliverable messages, by reason
        self._last_active = time.monotonic()
        self.lost = asyncio.Event()  # set when the attached backend's stream ends

    @property
    def attached(self) -> bool:
        return self._attached.is_set()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def idle_for(self) -> float:
        """Seconds since a client last used this session (0 while one is using it)."""
        if self._pending or self._listeners:
            return 0.0
        return time.monotonic() - self._last_active

    # -- the backend session -----------------------------------------------------------

    async def attach(self, transport: Transport) -> None:
        """Serve through this (initialized) transport; resend the read-only requests that
        were in flight when the previous one ended."""
        self._transport = transport
        self.lost.clear()
        self._reader = asyncio.get_running_loop().create_task(self._read(transport))
        self._backend_level = None  # a new backend starts at its own default
        await self._sync_level()
        for exchange in list(self._pending.values()):
            await self._send_request(exchange)
        if self._transport is transport and not self.lost.is_set():  # not gone already
            self._attached.set()

    async def detach(self) -> None:
        """The backend is gone: fail what may have changed something, keep the rest."""
        self._attached.clear()
        self.lists.clear()  # the next one may list other things
        self._transport = None
        for visible_id in list(self._questions):
            self._forget_question(visible_id)
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._reader = None
        for exchange in list(self._pending.values()):
            self._outlived(exchange)

    def _outlived(self, exchange: _Exchange) -> None:
        """A request in flight when its backend went: kept for the next backend if it never
        reached this one or is harmless to ask again, else answered with what happened."""
        if exchange.sends == 0 or (exchange.read_only and exchange.sends < MAX_SENDS):
            return
        if self._pending.pop(exchange.request["id"], None) is None:
            return  # answered or gone already
        method = exchange.request.get("method")
        if exchange.read_only:
            text = f"{method} failed: server {self.name} ended twice while answering it"
        else:
            text = (
                f"server {self.name} restarted while {method} was in flight; "
                "it may or may not have run"
            )
        exchange.queue.put_nowait(
            jsonrpc.error(exchange.client_id, jsonrpc.BACKEND_UNAVAILABLE, text)
        )

    async def close(self, reason: str) -> None:
        """No backend will come back: fail everything in flight."""
        await self.detach()
        for backend_id, exchange in list(self._pending.items()):
            exchange.queue.put_nowait(
                jsonrpc.error(exchange.client_id, jsonrpc.BACKEND_UNAVAILABLE, reason)
            )
            self._pending.pop(backend_id, None)

    async def _send(self, message: Message) -> None:
        transport = self._transport
        if transport is None:
            raise BackendUnavailable(f"{self.name}: no backend session")
        try:
            await transport.send(message)
        except OSError:
            # It cannot be written to: the backend is gone (its process ended, or its stdin
            # closed), though its output may not have ended yet. Nothing more goes to it.
            self._lose(transport)
            raise

    def _lose(self, transport: Transport) -> None:
        """The session through `transport` ended: requests wait, and the replica (which
        watches `lost`) replaces the backend."""
        if self._transport is transport:
            self._attached.clear()
            self.lost.set()

    async def _send_request(self, exchange: _Exchange) -> None:
        """Send a request to the backend, or leave it for the next one (attach sends it) when
        this one cannot take it."""
        transport = self._transport
        try:
            await self._send(exchange.request)
        except (OSError, BackendUnavailable):
            return
        except Stalled as stalled:  # nothing was written: say so now, not at the deadline
            if self._pending.pop(exchange.request["id"], None) is not None:
                method = exchange.request.get("method")
                text = f"server {self.name}: {stalled}; {method} was not sent"
                exchange.queue.put_nowait(
                    jsonrpc.error(exchange.client_id, jsonrpc.BACKEND_UNAVAILABLE, text)
                )
            return
        exchange.sends += 1
        if self._transport is not transport:  # that backend went while this was sent to it
            self._outlived(exchange)

    # -- from clients ------------------------------------------------------------------

    def exchange(self, caller: Caller, message: Message) -> AsyncGenerator[Message, None]:
        """Send one client request; yield what the server sends for it, ending with the
        response (or an error saying why there is none). The stream itself is returned, not
        wrapped in another generator that would pass each item on."""
        if message.get("method") in list_cache.CACHED:
            return self._listed(caller, message)
        return self._exchange(caller, message)

    async def _listed(self, caller: Caller, message: Message) -> AsyncGenerator[Message, None]:
        """A list from the cache, or from the one request for it in flight, or asked now."""
        request_id, key = message.get("id"), list_cache.key_of(message)
        known = self.lists.fresh(key)
        if known is None and (loading := self.lists.loading(key)) is not None:
            known = await asyncio.shield(loading)  # None: it failed to load, ask again
            if known is not None:
                self.lists.counts["shared"] += 1
        if known is not None and jsonrpc.progress_token(message) is None:
            yield {**known, "id": request_id}
            return
        began = self.lists.begin(key)
        response = None
        try:
            async for item in self._exchange(caller, message):
                if jsonrpc.is_response(item):
                    response = item
                yield item
        finally:
            self.lists.finish(key, began, response)

    async def _exchange(self, caller: Caller, message: Message) -> AsyncGenerator[Message, None]:
        request_id = message.get("id")
        self._last_active = time.monotonic()
        try:
            if not self._attached.is_set():  # wait_for makes a task: only when it must wait
                await asyncio.wait_for(self._attached.wait(), self.attach_timeout)
        except TimeoutError:
            yield jsonrpc.error(
                request_id, jsonrpc.BACKEND_UNAVAILABLE, f"{self.name} is not running"
            )
            return
        method = str(message.get("method"))
        if method == "logging/setLevel":  # never to the backend: its level is everyone's
            yield await self._set_session_level(caller, message)
            return
        backend_id = next(self._ids)
        request = {**message, "id": backend_id}
        token = jsonrpc.progress_token(message)
        exchange = _Exchange(caller, request_id, request, token, method in READ_ONLY)
        exchange.log_level = log_levels.requested(message) if caller.per_request else None
        if token is not None:
            params = dict(request["params"])
            params["_meta"] = {**params["_meta"], "progressToken": str(backend_id)}
            request["params"] = params
            self._progress[str(backend_id)] = exchange
        self._pending[backend_id] = exchange
        deadline = asyncio.get_running_loop().time() + self.request_timeout
        answered = False
        try:
            if exchange.log_level:
                await self._sync_level()
            await self._send_request(exchange)  # if the backend just went, on attach
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        item = await exchange.queue.get()
                except TimeoutError:
                    yield jsonrpc.error(
                        request_id,
                        jsonrpc.REQUEST_TIMEOUT,
                        f"{method} got no answer from server {self.name} within "
                        f"{self.request_timeout:g} s; it was cancelled",
                    )
                    return
                answered = jsonrpc.is_response(item) and item.get("id") == request_id
                if answered and method == "resources/subscribe" and "result" in item:
                    uri = str((message.get("params") or {}).get("uri"))
                    self._subscriptions.setdefault(uri, set()).add(caller.session)
                yield item
                if answered:
                    return
        finally:
            self._last_active = time.monotonic()
            self._pending.pop(backend_id, None)
            self._progress.pop(str(backend_id), None)
            for visible_id in list(exchange.questions):
                self._forget_question(visible_id)
            if not answered and exchange.sends and self._transport is not None:
                await self._cancel_at_backend(backend_id, "the client went away")
            if exchange.log_level:
                await self._sync_level()

    async def _set_session_level(self, caller: Caller, message: Message) -> Message:
        """A 2025-era client's level is its own: kept here, the backend set to what the most
        verbose client wants, each client's lines filtered to its level."""
        if caller.per_request:
            text = "2026-07-28 sets the log level per request: io.modelcontextprotocol/logLevel"
            return jsonrpc.error(message.get("id"), jsonrpc.METHOD_NOT_FOUND, text)
        level = (message.get("params") or {}).get("level")
        if level not in log_levels.SEVERITY:
            text = f"Invalid params: level must be one of {', '.join(log_levels.LEVELS)}"
            return jsonrpc.error(message.get("id"), jsonrpc.INVALID_PARAMS, text)
        self._session_levels.set(caller.session, level)
        await self._sync_level()
        return jsonrpc.result(message.get("id"), {})

    async def _sync_level(self) -> None:
        wanted = log_levels.most_verbose(
            [*self._session_levels.values(), *(e.log_level for e in self._pending.values())]
        )
        if wanted is None or wanted == self._backend_level or self._transport is None:
            return
        self._backend_level = wanted
        request = {
            "jsonrpc": "2.0",
            "id": f"mcpd-level-{next(self._ids)}",  # its answer matches no client's request
            "method": "logging/setLevel",
            "params": {"level": wanted},
        }
        with contextlib.suppress(OSError, BackendUnavailable, Stalled):
            await self._send(request)

    async def _cancel_at_backend(self, backend_id: int, reason: str) -> None:
        cancel = jsonrpc.notification(
            "notifications/cancelled", {"requestId": backend_id, "reason": reason}
        )
        with contextlib.suppress(Exception):
            await self._send(cancel)

    async def deliver(self, caller: Caller, message: Message) -> None:
        """A notification, or an answer to a server->client request, from a client."""
        if jsonrpc.is_response(message):
            question = self._questions.get(str(message["id"]))
            if question is None or question.session != caller.session:
                self.dropped["foreign_answer"] += 1
                return  # unknown, or not this client's to answer
            self._forget_question(str(message["id"]), answer=False)
            await self._send_from_client({**message, "id": question.backend_id})
            return
        method = message.get("method")
        if method == "notifications/cancelled":
            params = message.get("params") or {}
            for backend_id, exchange in list(self._pending.items()):
                if exchange.caller.session == caller.session and exchange.client_id == params.get(
                    "requestId"
                ):
                    del self._pending[backend_id]
                    exchange.queue.put_nowait(  # the client first: the backend may be slow
                        jsonrpc.error(
                            exchange.client_id, jsonrpc.REQUEST_CANCELLED, "cancelled by the client"
                        )
                    )
                    if exchange.sends:
                        await self._cancel_at_backend(backend_id, "cancelled by the client")
            return
        if method in FORWARDED_NOTIFICATIONS:
            await self._send_from_client(message)
        # Anything else (initialized: the replica did the handshake) stays here.

    async def _send_from_client(self, message: Message) -> None:
        """A client's answer or notification; lost with its backend (counted), raising Stalled
        when the backend does not read."""
        try:
            await self._send(message)
        except (OSError, BackendUnavailable):  # the next backend never asked, needs no notice
            self.dropped["client_message_backend_gone"] += 1

    async def listen(self, caller: Caller) -> AsyncGenerator[Message, None]:
        """Messages for `caller` outside any request of its: list changes, server requests."""
        listener = _Listener(caller)
        self._listeners[caller.session] = listener
        try:
            while True:
                yield await listener.queue.get()
        finally:
            self._last_active = time.monotonic()
            if self._listeners.get(caller.session) is listener:
                del self._listeners[caller.session]
            for sessions in self._subscriptions.values():
                sessions.discard(caller.session)

    # -- from the backend --------------------------------------------------------------

    async def _read(self, transport: Transport) -> None:
        try:
            while (message := await transport.receive()) is not None:
                try:
                    await self._route(message)
                except Stalled:  # an answer to the backend's own request; it is not reading
                    self.dropped["backend_stalled"] += 1
        except Exception:
            log.exception("%s: reading from the backend failed", self.name)
        self._lose(transport)

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
        raw = message.get("params")
        params: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if method == "notifications/progress":
            exchange = self._progress.get(str(params.get("progressToken")))
            if exchange is None:
                self.dropped["unknown_progress"] += 1
                return
            params = {**params, "progressToken": exchange.progress_token}
            self._offer(exchange.queue, {**message, "params": params})
            return
        if method in LIST_CHANGED:  # public: says only that a list changed
            self.lists.changed(method)
            for listener in self._listeners.values():
                self._offer(listener.queue, message)
            return
        if method == "notifications/resources/updated":
            for session in self._subscriptions.get(str(params.get("uri")), ()):
                if session in self._listeners:
                    self._offer(self._listeners[session].queue, message)
            return
        target = self._owner()
        if (
            method == "notifications/message"
            and not isinstance(target, str)
            and not self._wants_logs(target, message)
        ):
            self.dropped["log_below_level"] += 1
            return
        if isinstance(target, _Exchange | _Listener):
            self._offer(target.queue, message)
        else:
            self.dropped[f"notification_{target}"] += 1
            log.info("%s: dropped %s (%s)", self.name, method, target)

    def _wants_logs(self, target: _Exchange | _Listener, line: Message) -> bool:
        """A 2026-07-28 request gets lines only at or above the level it asked for; a
        2025-era session at or above its own setLevel, or all when it set none."""
        if target.caller.per_request:
            level = target.log_level if isinstance(target, _Exchange) else None
            return level is not None and log_levels.passes(line, level)
        return log_levels.passes(line, self._session_levels.get(target.caller.session))

    def _offer(self, queue: asyncio.Queue[Message], message: Message) -> None:
        if queue.qsize() >= MAX_QUEUED:
            self.dropped["queue_full"] += 1
            return
        queue.put_nowait(message)

    def _owner(self) -> _Exchange | _Listener | str:
        """Whose is a message the backend did not attribute: the oldest request in flight when
        all requests in flight are one tenant's; with none in flight, that tenant's listener
        when only one tenant listens. Otherwise why it has no owner."""
        exchanges = list(self._pending.values())
        if exchanges:
            if len({e.caller.tenant for e in exchanges}) == 1:
                return exchanges[0]
            return "ambiguous"
        # A 2026-07-28 subscription stream carries change notifications only.
        listeners = [entry for entry in self._listeners.values() if not entry.caller.per_request]
        if listeners and len({entry.caller.tenant for entry in listeners}) == 1:
            return listeners[-1]
        return "ambiguous" if listeners else "no_client"

    async def _server_request(self, message: Message) -> None:
        if message.get("method") == "ping":
            await self._send(jsonrpc.result(message["id"], {}))
            return
        named = message.pop(jsonrpc.RELATED_REQUEST_KEY, None)
        related = self._pending.get(named) if isinstance(named, int) else None
        target = related or self._owner()  # the transport may know whose question it is
        if isinstance(target, str) or len(self._questions) >= MAX_OPEN_QUESTIONS:
            reason = target if isinstance(target, str) else "too_many_questions"
            self.dropped[f"request_{reason}"] += 1
            text = {
                "ambiguous": "mcpd cannot tell which client this request is for: clients of "
                "several principals have requests in flight",
                "no_client": "no client is connected",
                "too_many_questions": "too many server requests are waiting for an answer",
            }[reason]
            await self._send(jsonrpc.error(message["id"], jsonrpc.METHOD_NOT_FOUND, text))
            return
        visible_id = f"mcpd-{next(self._ids)}"
        exchange = target if isinstance(target, _Exchange) else None
        self._questions[visible_id] = _Question(message["id"], target.caller.session, exchange)
        if exchange is not None:
            exchange.questions.add(visible_id)
        self._offer(target.queue, {**message, "id": visible_id})

    def _forget_question(self, visible_id: str, answer: bool = True) -> None:
        """Drop a server request nobody will answer; the backend hears so, not silence."""
        question = self._questions.pop(visible_id, None)
        if question is None:
            return
        if question.exchange is not None:
            question.exchange.questions.discard(visible_id)
        if answer and self._transport is not None:
            refusal = jsonrpc.error(
                question.backend_id, jsonrpc.REQUEST_CANCELLED, "the client went away"
            )
            task = asyncio.get_running_loop().create_task(self._send(refusal))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
