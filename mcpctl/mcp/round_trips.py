"""Multi round-trip requests (2026-07-28) served by backends that ask the 2025 way.

A 2025-era backend asks its client something (sampling, elicitation, roots) with a request of
its own while it works on the client's request. A 2026-07-28 client has no channel for that:
it expects the result `input_required`, carrying the questions, and then retries its request
with the answers. So the backend's request is parked here, still pending at the backend,
between the client's tries; the retry (on any gateway: its `requestState` names the ticket)
answers the backend's questions and continues the same request, which runs once. A parked
request nobody continues is cancelled at the backend when its deadline passes (DESIGN:
nothing waits forever), and a ticket serves one retry of the principal it was issued to.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mcpctl.mcp import jsonrpc
from mcpctl.mcp.caller import Caller
from mcpctl.mcp.jsonrpc import Message

RESUME = "mcpd/resume"  # the gateway's continuation of a parked request (never to a backend)
CAPABILITIES_KEY = "mcpd/inputCapabilities"  # on a 2026 client's request: what it can answer
TICKET_KEY = "mcpd/ticket"  # in an input_required result, for the gateway to seal
SERVER_KEY = "mcpd/server"
INPUT_REQUIRED_METHODS = frozenset({"tools/call", "prompts/get", "resources/read"})
NEEDS = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}
MAX_PARKED = 1000  # requests waiting for their client's answers, per host

Deliver = Callable[[Caller, Message], Awaitable[None]]


@dataclass(eq=False)
class _Parked:
    caller: Caller  # of the first try: the backend's questions belong to its session
    stream: AsyncGenerator[Message, None]
    deliver: Deliver
    capabilities: frozenset[str]
    questions: dict[str, Message] = field(default_factory=dict)  # open, by the id asked with
    progress_token: Any = None  # of the try being served now
    expiry: asyncio.TimerHandle | None = None


def for_round_trips(message: Message, capabilities: list[str]) -> Message:
    """A 2026-07-28 client's request as the gateway sends it to the host."""
    return {**message, CAPABILITIES_KEY: capabilities}


class RoundTrips:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._parked: dict[str, _Parked] = {}

    def __len__(self) -> int:
        return len(self._parked)

    async def serve(
        self,
        server: str,
        caller: Caller,
        message: Message,
        open_stream: Callable[[Message], AsyncGenerator[Message, None]],
        deliver: Deliver,
    ) -> AsyncGenerator[Message, None]:
        """Serve a request; a resumption (RESUME) continues the parked one it names."""
        if message.get("method") == RESUME:
            async for item in self._resume(server, caller, message):
                yield item
            return
        capabilities = frozenset(message.get(CAPABILITIES_KEY) or ())
        request = {k: v for k, v in message.items() if k != CAPABILITIES_KEY}
        parked = _Parked(caller, open_stream(request), deliver, capabilities)
        parked.progress_token = jsonrpc.progress_token(request)
        async for item in self._pump(server, parked, message.get("id")):
            yield item

    async def _resume(
        self, server: str, caller: Caller, message: Message
    ) -> AsyncGenerator[Message, None]:
        params = message.get("params") or {}
        ticket = str(params.get("ticket"))
        parked = self._parked.get(ticket)
        if parked is None or (parked.caller.principal, parked.caller.endpoint) != (
            caller.principal,
            caller.endpoint,
        ):
            yield jsonrpc.error(
                message.get("id"),
                jsonrpc.INVALID_PARAMS,
                f"the request this retry continues is gone from server {server} (it was "
                "continued already, ran past its deadline, or the server restarted); "
                "send it again without requestState",
            )
            return
        del self._parked[ticket]
        if parked.expiry is not None:
            parked.expiry.cancel()
        answers = params.get("answers") or {}
        for question_id in list(parked.questions):
            answer = answers.get(question_id)
            if isinstance(answer, dict) and ("result" in answer or "error" in answer):
                del parked.questions[question_id]
                reply = {"jsonrpc": "2.0", "id": question_id, **answer}
                await parked.deliver(parked.caller, reply)
        parked.progress_token = jsonrpc.progress_token(message)
        async for item in self._pump(server, parked, message.get("id")):
            yield item

    async def _pump(
        self, server: str, parked: _Parked, request_id: Any
    ) -> AsyncGenerator[Message, None]:
        """The backend's stream for this try: notifications pass, a question parks the
        request and answers `input_required`, the response ends it."""
        kept = False
        try:
            while not parked.questions:
                try:
                    item = await anext(parked.stream)
                except StopAsyncIteration:
                    return
                if jsonrpc.is_request(item):
                    await self._ask(parked, item)
                elif jsonrpc.is_response(item):
                    yield {**item, "id": request_id}
                    return
                else:
                    yield self._progress_of_this_try(parked, item)
            kept = True
            yield jsonrpc.result(request_id, self._park(server, parked))
        finally:
            if not kept:
                await parked.stream.aclose()

    async def _ask(self, parked: _Parked, question: Message) -> None:
        """Keep the question for the client, or answer it now when the client cannot."""
        needs = NEEDS.get(str(question.get("method")))
        refusal = None
        if needs is None or needs not in parked.capabilities:
            refusal = f"the client did not declare the {needs or question.get('method')} capability"
        elif len(self._parked) >= MAX_PARKED:
            refusal = "too many requests are waiting for their clients' answers"
        if refusal is None:
            parked.questions[str(question["id"])] = question
        else:
            error = jsonrpc.error(question["id"], jsonrpc.METHOD_NOT_FOUND, refusal)
            await parked.deliver(parked.caller, error)

    def _park(self, server: str, parked: _Parked) -> dict[str, Any]:
        ticket = secrets.token_urlsafe(18)
        self._parked[ticket] = parked
        parked.expiry = asyncio.get_running_loop().call_later(self.ttl, self._expire, ticket)
        return {
            "resultType": "input_required",
            "inputRequests": {
                question_id: {"method": q["method"], "params": q.get("params") or {}}
                for question_id, q in parked.questions.items()
            },
            TICKET_KEY: ticket,
            SERVER_KEY: server,
        }

    def _expire(self, ticket: str) -> None:
        parked = self._parked.pop(ticket, None)
        if parked is not None:  # closing the stream cancels the request at the backend
            task = asyncio.get_running_loop().create_task(parked.stream.aclose())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def close(self) -> None:
        for ticket in list(self._parked):
            parked = self._parked.pop(ticket)
            if parked.expiry is not None:
                parked.expiry.cancel()
            with contextlib.suppress(Exception):
                await parked.stream.aclose()

    def _progress_of_this_try(self, parked: _Parked, item: Message) -> Message:
        """Progress of a resumed request carries the token of the try being served."""
        if item.get("method") != "notifications/progress" or parked.progress_token is None:
            return item
        params = {**(item.get("params") or {}), "progressToken": parked.progress_token}
        return {**item, "params": params}
