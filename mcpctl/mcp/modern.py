"""Backends that speak only MCP 2026-07-28: found with `server/discover`, called with the
per-request envelope.

Such a backend has no `initialize` handshake and no session: every request carries the
protocol version, the client's capabilities and identity in `params._meta`, and over
Streamable HTTP the `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers, and the
`Mcp-Param-*` headers its tools ask for with `x-mcp-header` (learnt from `tools/list`). The replica
puts a `ModernTransport` around the backend's transport, so the multiplexer and the gateway
keep sending plain (handshake-era shaped) requests on one session as for any backend.

It also makes the backend behave as a handshake-era server towards the multiplexer in the two
places where 2026-07-28 changed the conversation:
- multi round-trip requests: an `input_required` result is not delivered; its `inputRequests`
  go up as server-to-client requests (as a 2025 server asks), the answers coming down are
  collected, and the request is sent again with `inputResponses` and the echoed `requestState`
  under a new id, until the backend completes it; the final response carries the first id;
- subscriptions: one `subscriptions/listen` of the transport's own, for every list change the
  backend announces and the resources subscribed with `resources/subscribe` (answered here),
  whose notifications go up untagged, as a 2025 server's unsolicited notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PROTOCOL_VERSION_HEADER,
    NAME_BEARING_METHODS,
    encode_header_value,
    find_invalid_x_mcp_header,
    mcp_param_headers,
    x_mcp_header_map,
)

from mcpctl.mcp import bridge, jsonrpc
from mcpctl.mcp.http_transports import SdkTransport
from mcpctl.mcp.jsonrpc import Message
from mcpctl.mcp.transports import Stalled, Transport
from mcpctl.mcp.versions import SINGLE_EXCHANGE_REVISIONS

log = logging.getLogger(__name__)
REVISION = SINGLE_EXCHANGE_REVISIONS[-1]
DISCOVER_ID = "mcpd-discover"
UNSUPPORTED_PROTOCOL_VERSION = -32022
HEADER_MISMATCH = -32020
MAX_TOOL_PAGES = 100  # of mcpd's own tools/list, to learn the tools' x-mcp-header
LIST_TIMEOUT = 30.0  # for each page of it
# Requests 2026-07-28 removed: answered here, as the backend would have no use for them.
ANSWERED_HERE = frozenset({"ping", "logging/setLevel"})
# Notifications 2026-07-28 removed: never sent.
NOT_SENT = frozenset({"notifications/initialized", "notifications/roots/list_changed"})
# Multi round-trip requests (the only requests that may answer `input_required`)
INPUT_REQUIRED_METHODS = frozenset({"tools/call", "prompts/get", "resources/read"})
MAX_ROUNDS = 10  # input_required answers to one request; then it fails
MAX_WAITING = 1000  # requests whose backend's questions are out with the clients
STATE_ONLY_DELAYS = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)  # retries of rounds without questions
# Subscriptions (2026-07-28 has no resources/subscribe: one subscriptions/listen carries all)
SUBSCRIPTION_ID_KEY = "io.modelcontextprotocol/subscriptionId"
ACKNOWLEDGED = "notifications/subscriptions/acknowledged"
SUBSCRIBE_METHODS = frozenset({"resources/subscribe", "resources/unsubscribe"})
LIST_FILTERS = {  # capability -> the listen filter's field for its list_changed
    "tools": "toolsListChanged",
    "prompts": "promptsListChanged",
    "resources": "resourcesListChanged",
}
MAX_SUBSCRIBED = 1000  # resource URIs one backend is asked to watch
LISTEN_TIMEOUT = 10.0  # for the backend to acknowledge a listen a subscribe waits for
LISTEN_RETRY = (0.5, 60.0)  # first and longest pause before opening an ended listen again


@dataclass(eq=False)
class _Trip:
    """A request that may need input from the client: its rounds with the backend."""

    request: Message  # as the multiplexer sent it: its id is the one the answer carries
    backend_id: Any  # of the try the backend is serving; None between tries
    rounds: int = 0
    idle_rounds: int = 0  # consecutive rounds with requestState and no questions
    questions: dict[str, str] = field(default_factory=dict)  # id asked with -> inputRequests key
    answers: dict[str, Any] = field(default_factory=dict)  # inputRequests key -> result
    state: str | None = None
    retry: asyncio.Task[None] | None = None


def discover_request(client_info: dict[str, Any], capabilities: dict[str, Any]) -> Message:
    request = {"jsonrpc": "2.0", "id": DISCOVER_ID, "method": "server/discover", "params": {}}
    return bridge.with_envelope(request, REVISION, capabilities, client_info)


def initialize_result(discovered: dict[str, Any]) -> dict[str, Any] | None:
    """An InitializeResult-shaped view of a DiscoverResult (what the gateway serves from),
    or None when the backend does not offer the revision mcpd speaks to such backends."""
    versions = discovered.get("supportedVersions")
    if not isinstance(versions, list) or REVISION not in versions:
        return None
    meta = discovered.get("_meta")
    server_info = meta.get(bridge.SERVER_INFO_KEY) if isinstance(meta, dict) else None
    result: dict[str, Any] = {
        "protocolVersion": REVISION,
        "capabilities": discovered.get("capabilities") or {},
        "serverInfo": server_info or {"name": "unknown", "version": "unknown"},
    }
    if discovered.get("instructions"):
        result["instructions"] = discovered["instructions"]
    return result


def http_headers(message: Message) -> dict[str, str]:
    """The Streamable HTTP headers of a 2026-07-28 request (SEP-2243)."""
    method = str(message.get("method"))
    headers = {MCP_PROTOCOL_VERSION_HEADER: REVISION, MCP_METHOD_HEADER: method}
    key = NAME_BEARING_METHODS.get(method)
    params = message.get("params")
    if key is not None and isinstance(params, dict) and isinstance(params.get(key), str):
        headers[MCP_NAME_HEADER] = encode_header_value(params[key])
    return headers


async def send_request(transport: Transport, request: Message) -> None:
    """Send an enveloped request, with its headers where the transport is HTTP."""
    if isinstance(transport, SdkTransport):
        await transport.send(request, headers=http_headers(request))
    else:
        await transport.send(request)


class ModernTransport(Transport):
    """A backend transport as the multiplexer expects one, over a 2026-07-28 backend:
    requests get the envelope (keeping the `_meta` keys they have, such as `progressToken`
    and `traceparent`), what 2026-07-28 removed is answered here or not sent, and the rest
    (cancellations) passes as it is. Over HTTP, a `tools/call` gets the `Mcp-Param-*` headers
    of its tool's `x-mcp-header` annotations, known from the backend's `tools/list` results
    (mcpd lists the tools itself before calling one it has not seen), and tools whose
    annotations are invalid are left out of `tools/list`, as the spec asks of clients.
    Multi round-trip requests and subscriptions are translated to their 2025 shapes (module
    docstring); `server_capabilities` (the backend's) say what its listen asks for."""

    def __init__(
        self,
        inner: Transport,
        client_info: dict[str, Any],
        capabilities: dict[str, Any],
        server_capabilities: dict[str, Any] | None = None,
    ) -> None:
        self.inner = inner
        self.client_info = client_info
        self.capabilities = capabilities
        self.server_capabilities = server_capabilities or {}
        self._http = inner if isinstance(inner, SdkTransport) else None
        self._inbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        # x-mcp-header, per tool name: property path -> header token
        self._param_headers: dict[str, dict[tuple[str, ...], str]] = {}
        self._listed = False  # mcpd listed every tool since the last HeaderMismatch
        self._listing: asyncio.Future[None] | None = None
        self._lists: set[Any] = set()  # ids of clients' tools/list in flight
        self._calls: dict[Any, str] = {}  # ids of tools/call in flight -> tool
        self._own: dict[str, asyncio.Future[Message]] = {}  # mcpd's own requests
        self._own_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        # multi round-trip requests
        self._trips: dict[Any, _Trip] = {}  # by the multiplexer's request id
        self._tries: dict[Any, _Trip] = {}  # by the id of the try the backend is serving
        self._asked: dict[str, _Trip] = {}  # by the id its question went up with
        self._waiting: set[_Trip] = set()  # with questions out
        # subscriptions
        self._uris: set[str] = set()  # resources/subscribe'd
        self._listens: dict[str, dict[str, Any]] = {}  # open listens: id -> filter asked
        self._unacknowledged: str | None = None  # the listen sent last, until acknowledged
        self._refilter = False  # the filter changed while a listen was unacknowledged
        self._subscribers: dict[Any, tuple[str, asyncio.TimerHandle]] = {}  # subscribe id ->
        self._listen_failures = 0
        self._reopen: asyncio.TimerHandle | None = None

    async def send(self, message: Message) -> None:
        method = message.get("method")
        if jsonrpc.is_request(message):
            if method in ANSWERED_HERE:
                self._inbox.put_nowait(jsonrpc.result(message["id"], {}))
                return
            if method in SUBSCRIBE_METHODS:
                self._subscribe(message)
                return
            if method in INPUT_REQUIRED_METHODS:
                trip = _Trip(message, message["id"])
                self._trips[message["id"]] = trip
                self._tries[message["id"]] = trip
            await self._send_request(message)
            return
        if jsonrpc.is_response(message):  # a client's answer to one of the backend's questions
            await self._answer(message)
            return
        if method in NOT_SENT:
            return
        if method == "notifications/cancelled":
            cancel = self._cancelled(message)
            if cancel is None:
                return
            message = cancel
        await self.inner.send(message)

    async def _send_request(self, message: Message) -> None:
        """Send a request with the envelope (and over HTTP its headers)."""
        method = message.get("method")
        enveloped = bridge.with_envelope(message, REVISION, self.capabilities, self.client_info)
        if self._http is None:
            await self.inner.send(enveloped)
            return
        headers = http_headers(enveloped)
        if method == "tools/list":
            self._lists.add(message["id"])
        elif method == "tools/call":
            headers.update(await self._tool_headers(message))
        await self._http.send(enveloped, headers=headers)

    def _cancelled(self, message: Message) -> Message | None:
        """A cancellation, for the try the backend is serving now (None: nothing to cancel
        there, the request was between tries or answered here)."""
        params = message.get("params") or {}
        cancelled = params.get("requestId")
        if not isinstance(cancelled, int | str):
            return message
        subscriber = self._subscribers.pop(cancelled, None)
        if subscriber is not None:
            subscriber[1].cancel()
            return None
        trip = self._trips.pop(cancelled, None)
        if trip is not None:
            self._end_rounds(trip)
            if trip.backend_id is None:
                return None
            self._tries.pop(trip.backend_id, None)
            cancelled = trip.backend_id
            message = {**message, "params": {**params, "requestId": cancelled}}
        # its answer may never come (a closed POST)
        self._lists.discard(cancelled)
        self._calls.pop(cancelled, None)
        return message

    async def receive(self) -> Message | None:
        self._start()
        return await self._inbox.get()

    def _start(self) -> None:
        if self._pump is None:
            self._pump = asyncio.get_running_loop().create_task(self._read())
            if self._filter():
                self._listen()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("sending to a 2026-07-28 backend failed: %s", task.exception())

    async def _read(self) -> None:
        try:
            while (message := await self.inner.receive()) is not None:
                if jsonrpc.is_response(message):
                    if self._http is not None:
                        waiter = self._own.pop(str(message["id"]), None)
                        if waiter is not None:
                            if not waiter.done():
                                waiter.set_result(message)
                            continue
                        message = self._learn(message)
                    if message["id"] in self._listens:
                        self._listen_ended(message)
                        continue
                    trip = self._tries.pop(message["id"], None)
                    if trip is not None:
                        settled = self._settled(trip, message)
                        if settled is None:
                            continue
                        message = settled
                elif not jsonrpc.is_request(message):
                    untagged = self._untagged(message)
                    if untagged is None:
                        continue
                    message = untagged
                self._inbox.put_nowait(message)
        finally:
            self._inbox.put_nowait(None)
            for waiter in self._own.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("the backend session ended"))

    # -- multi round-trip requests -----------------------------------------------------

    def _settled(self, trip: _Trip, response: Message) -> Message | None:
        """The backend's answer to a try: the final response (with the first id), or None
        when another round began."""
        trip.backend_id = None
        result = response.get("result")
        if not isinstance(result, dict) or result.get("resultType") != "input_required":
            self._trips.pop(trip.request["id"], None)
            return {**response, "id": trip.request["id"]}
        trip.rounds += 1
        failure = self._next_round(trip, result)
        if failure is None:
            return None
        self._trips.pop(trip.request["id"], None)
        self._end_rounds(trip)
        return jsonrpc.error(trip.request["id"], jsonrpc.INTERNAL_ERROR, failure)

    def _next_round(self, trip: _Trip, result: dict[str, Any]) -> str | None:
        """Ask the round's questions upward, or retry at once when there are none; or why
        the request fails."""
        method = trip.request.get("method")
        if trip.rounds > MAX_ROUNDS:
            return f"{method}: the server asked for input {MAX_ROUNDS} times without completing"
        asked = result.get("inputRequests") or {}
        state = result.get("requestState")
        valid = isinstance(asked, dict) and all(
            isinstance(q, dict) and isinstance(q.get("method"), str) for q in asked.values()
        )
        if not valid or not isinstance(state, str | None) or (not asked and state is None):
            return f"{method}: the server answered an invalid input_required result"
        trip.state, trip.answers, trip.questions = state, {}, {}
        if not asked:  # the spec lets the client retry at once
            delay = STATE_ONLY_DELAYS[min(trip.idle_rounds, len(STATE_ONLY_DELAYS) - 1)]
            trip.idle_rounds += 1
            trip.retry = self._spawn(self._retry_after(trip, delay))
            return None
        if len(self._waiting) >= MAX_WAITING:
            return "too many requests are waiting for their clients' answers"
        trip.idle_rounds = 0
        self._waiting.add(trip)
        round_id = next(self._own_ids)
        for key, question in asked.items():
            question_id = f"mrtr-{round_id}-{key}"
            trip.questions[question_id] = str(key)
            self._asked[question_id] = trip
            params = question.get("params")
            self._inbox.put_nowait(
                {
                    "jsonrpc": "2.0",
                    "id": question_id,
                    "method": question["method"],
                    "params": params if isinstance(params, dict) else {},
                    jsonrpc.RELATED_REQUEST_KEY: trip.request.get("id"),  # whose question
                }
            )
        return None

    async def _answer(self, response: Message) -> None:
        """A client's answer: kept for the retry, which goes once the round is answered. An
        error fails the request: the spec has no way to send it to the server, and a client
        must answer every question before it retries."""
        question_id = response.get("id")
        if not isinstance(question_id, str) or (trip := self._asked.pop(question_id, None)) is None:
            return  # late (the request ended), or for nothing the backend asked
        key = trip.questions.pop(question_id)
        error = response.get("error")
        if error is not None or not isinstance(response.get("result"), dict):
            self._trips.pop(trip.request["id"], None)
            self._end_rounds(trip)
            error = error if isinstance(error, dict) else {}
            text = f"the client could not answer the server's question {key!r}: "
            code = error.get("code")
            self._inbox.put_nowait(
                jsonrpc.error(
                    trip.request["id"],
                    code if isinstance(code, int) else jsonrpc.INTERNAL_ERROR,
                    text + str(error.get("message") or "no result"),
                    error.get("data"),
                )
            )
            return
        trip.answers[key] = response["result"]
        if not trip.questions:
            self._waiting.discard(trip)
            await self._retry(trip)

    async def _retry_after(self, trip: _Trip, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        trip.retry = None
        await self._retry(trip)

    async def _retry(self, trip: _Trip) -> None:
        """The request again, under a new id, with the answers and the state."""
        if self._trips.get(trip.request["id"]) is not trip:
            return  # cancelled meanwhile
        params = {
            k: v
            for k, v in (trip.request.get("params") or {}).items()
            if k not in ("inputResponses", "requestState")
        }
        if trip.answers:
            params["inputResponses"] = trip.answers
        if trip.state is not None:
            params["requestState"] = trip.state
        backend_id = f"mcpd-mrtr-{next(self._own_ids)}"
        trip.backend_id = backend_id
        self._tries[backend_id] = trip
        try:
            await self._send_request({**trip.request, "id": backend_id, "params": params})
        except (OSError, Stalled) as error:  # the client hears it now, not at its deadline
            self._tries.pop(backend_id, None)
            self._trips.pop(trip.request["id"], None)
            text = f"{trip.request.get('method')}: the retry did not reach the server: {error}"
            self._inbox.put_nowait(
                jsonrpc.error(trip.request["id"], jsonrpc.BACKEND_UNAVAILABLE, text)
            )

    def _end_rounds(self, trip: _Trip) -> None:
        """Forget a request's open questions and its scheduled retry."""
        for question_id in trip.questions:
            self._asked.pop(question_id, None)
        trip.questions.clear()
        self._waiting.discard(trip)
        if trip.retry is not None:
            trip.retry.cancel()
            trip.retry = None

    # -- subscriptions -------------------------------------------------------------------

    def _filter(self) -> dict[str, Any]:
        """What the backend's listen asks for: every list change it announces, and the
        resources subscribed."""
        wanted: dict[str, Any] = {}
        for capability, name in LIST_FILTERS.items():
            served = self.server_capabilities.get(capability)
            if isinstance(served, dict) and served.get("listChanged"):
                wanted[name] = True
        if self._uris:
            wanted["resourceSubscriptions"] = sorted(self._uris)
        return wanted

    def _subscribe(self, message: Message) -> None:
        """resources/subscribe and unsubscribe change what the listen asks for; a subscribe
        is answered once a listen that watches its resource is acknowledged."""
        request_id = message["id"]
        uri = (message.get("params") or {}).get("uri")
        resources = self.server_capabilities.get("resources")
        if not isinstance(resources, dict) or not resources.get("subscribe"):
            text = "the server does not support resource subscriptions"
            self._inbox.put_nowait(jsonrpc.error(request_id, jsonrpc.METHOD_NOT_FOUND, text))
            return
        if not isinstance(uri, str):
            text = "Invalid params: uri must be a string"
            self._inbox.put_nowait(jsonrpc.error(request_id, jsonrpc.INVALID_PARAMS, text))
            return
        if message["method"] == "resources/unsubscribe":
            if uri in self._uris:
                self._uris.discard(uri)
                self._listen()
            self._inbox.put_nowait(jsonrpc.result(request_id, {}))
            return
        if uri in self._uris and self._unacknowledged is None and self._listens:
            self._inbox.put_nowait(jsonrpc.result(request_id, {}))
            return
        if uri not in self._uris and len(self._uris) >= MAX_SUBSCRIBED:
            text = f"the server watches {MAX_SUBSCRIBED} resources for mcpd already"
            self._inbox.put_nowait(jsonrpc.error(request_id, jsonrpc.INTERNAL_ERROR, text))
            return
        if len(self._subscribers) >= MAX_WAITING:
            text = "too many subscriptions are waiting for the server"
            self._inbox.put_nowait(jsonrpc.error(request_id, jsonrpc.INTERNAL_ERROR, text))
            return
        self._uris.add(uri)
        timer = asyncio.get_running_loop().call_later(LISTEN_TIMEOUT, self._unheard, request_id)
        self._subscribers[request_id] = (uri, timer)
        self._listen()

    def _unheard(self, request_id: Any) -> None:
        subscriber = self._subscribers.pop(request_id, None)
        if subscriber is not None:
            text = (
                f"the server did not acknowledge a subscription to {subscriber[0]} "
                f"within {LISTEN_TIMEOUT:g} s"
            )
            self._inbox.put_nowait(jsonrpc.error(request_id, jsonrpc.INTERNAL_ERROR, text))

    def _listen(self) -> None:
        """Open a listen with the filter wanted now; the ones before it close once it is
        acknowledged (until then they still deliver: nothing is missed in between)."""
        if self._closed:
            return
        if self._unacknowledged is not None:
            self._refilter = True
            return
        if self._reopen is not None:
            self._reopen.cancel()
            self._reopen = None
        self._refilter = False
        wanted = self._filter()
        if not wanted:
            self._close_listens(keep=None)
            return
        listen_id = f"mcpd-listen-{next(self._own_ids)}"
        self._listens[listen_id] = wanted
        self._unacknowledged = listen_id
        request = {
            "jsonrpc": "2.0",
            "id": listen_id,
            "method": "subscriptions/listen",
            "params": {"notifications": wanted},
        }
        self._spawn(self._send_request(request))

    def _close_listens(self, keep: str | None) -> None:
        for listen_id in [i for i in self._listens if i != keep]:
            del self._listens[listen_id]
            cancel = jsonrpc.notification("notifications/cancelled", {"requestId": listen_id})
            self._spawn(self.inner.send(cancel))  # over HTTP: the listen's POST closes

    def _acknowledged(self, listen_id: str, params: dict[str, Any]) -> None:
        if listen_id != self._unacknowledged:
            return
        self._unacknowledged = None
        self._listen_failures = 0
        honored = params.get("notifications")
        honored = honored if isinstance(honored, dict) else {}
        watched = honored.get("resourceSubscriptions")
        watched = set(watched) if isinstance(watched, list) else set()
        asked = set(self._listens[listen_id].get("resourceSubscriptions") or ())
        for request_id, (uri, timer) in list(self._subscribers.items()):
            if uri not in asked:
                continue  # in the next listen's filter
            timer.cancel()
            del self._subscribers[request_id]
            if uri in watched:
                self._inbox.put_nowait(jsonrpc.result(request_id, {}))
            else:
                self._uris.discard(uri)
                text = f"the server does not watch {uri}"
                self._inbox.put_nowait(jsonrpc.error(request_id, jsonrpc.INVALID_PARAMS, text))
        if self._refilter:
            self._refilter = False
            self._listen()
        else:
            self._close_listens(keep=listen_id)

    def _listen_ended(self, response: Message) -> None:
        """The backend ended a listen (or it failed): open one again, after a pause that
        grows while they keep failing."""
        listen_id = response["id"]
        del self._listens[listen_id]
        if "error" in response:
            log.info("the server ended its subscription: %s", response["error"].get("message"))
        if listen_id == self._unacknowledged:
            self._unacknowledged = None
        elif self._listens or self._unacknowledged is not None:
            return  # a newer one serves
        if self._closed or self._reopen is not None:
            return
        first, longest = LISTEN_RETRY
        delay = min(longest, first * 2**self._listen_failures)
        self._listen_failures += 1
        self._reopen = asyncio.get_running_loop().call_later(delay, self._listen_again)

    def _listen_again(self) -> None:
        self._reopen = None
        self._listen()

    def _untagged(self, message: Message) -> Message | None:
        """A notification as a 2025 server sends it: without the subscription id (None: it
        is the listen's own, or belongs to a listen closed already)."""
        params = message.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        if not isinstance(meta, dict) or SUBSCRIPTION_ID_KEY not in meta:
            return message
        assert isinstance(params, dict)
        listen_id = meta[SUBSCRIPTION_ID_KEY]
        if listen_id not in self._listens:
            return None
        if message.get("method") == ACKNOWLEDGED:
            self._acknowledged(listen_id, params)
            return None
        rest = {k: v for k, v in meta.items() if k != SUBSCRIPTION_ID_KEY}
        params = {k: v for k, v in params.items() if k != "_meta"}
        if rest:
            params["_meta"] = rest
        return {**message, "params": params}

    def _learn(self, response: Message) -> Message:
        """A client's tools/list teaches the tools' headers; a HeaderMismatch unteaches."""
        request_id = response["id"]
        tool = self._calls.pop(request_id, None)
        error = response.get("error")
        if tool is not None and isinstance(error, dict) and error.get("code") == HEADER_MISMATCH:
            self._listed = False  # its tools may have changed: list them again on a call
            self._param_headers.pop(tool, None)
        if request_id not in self._lists:
            return response
        self._lists.discard(request_id)
        result = response.get("result")
        if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
            return response
        tools = self._remember(result["tools"])
        return {**response, "result": {**result, "tools": tools}}

    def _remember(self, tools: list[Any]) -> list[Any]:
        """The tools whose x-mcp-header annotations are valid, their headers remembered."""
        kept = []
        for tool in tools:
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                continue
            schema = tool.get("inputSchema")
            invalid = find_invalid_x_mcp_header(schema)
            if invalid is not None:
                log.warning("left out tool %r: invalid x-mcp-header (%s)", tool["name"], invalid)
                continue
            self._param_headers[tool["name"]] = x_mcp_header_map(schema)
            kept.append(tool)
        return kept

    async def _tool_headers(self, call: Message) -> dict[str, str]:
        params = call.get("params") or {}
        name = params.get("name")
        if not isinstance(name, str):
            return {}
        if name not in self._param_headers and not self._listed:
            await self._list_tools()
        self._calls[call["id"]] = name
        header_map = self._param_headers.get(name)
        arguments = params.get("arguments")
        if not header_map or not isinstance(arguments, dict):
            return {}
        return mcp_param_headers(header_map, arguments)

    async def _list_tools(self) -> None:
        """List every tool once (calls waiting for it share the one listing)."""
        if self._listing is None or self._listing.done():
            self._listing = asyncio.ensure_future(self._list_every_page())
        with contextlib.suppress(Exception):  # without the list, the call goes without
            await asyncio.shield(self._listing)

    async def _list_every_page(self) -> None:
        assert self._http is not None
        self._start()
        cursor: str | None = None
        for _ in range(MAX_TOOL_PAGES):
            request_id = f"mcpd-tools-{next(self._own_ids)}"
            params = {"cursor": cursor} if cursor else {}
            request = {"jsonrpc": "2.0", "id": request_id, "method": "tools/list", "params": params}
            enveloped = bridge.with_envelope(request, REVISION, self.capabilities, self.client_info)
            waiter: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
            self._own[request_id] = waiter
            try:
                await self._http.send(enveloped, headers=http_headers(enveloped))
                response = await asyncio.wait_for(waiter, LIST_TIMEOUT)
            finally:
                self._own.pop(request_id, None)
            result = response.get("result")
            if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
                break
            self._remember(result["tools"])
            cursor = result.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                break
        self._listed = True

    async def close(self) -> None:
        self._closed = True
        if self._reopen is not None:
            self._reopen.cancel()
        for _, timer in self._subscribers.values():
            timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
        await self.inner.close()


def wrap(
    transport: Transport,
    result: dict[str, Any],
    client_info: dict[str, Any],
    capabilities: dict[str, Any],
) -> Transport:
    """The transport the multiplexer should use for a backend that answered `result`."""
    if result.get("protocolVersion") in SINGLE_EXCHANGE_REVISIONS:
        served = result.get("capabilities")
        return ModernTransport(
            transport, client_info, capabilities, served if isinstance(served, dict) else {}
        )
    return transport
