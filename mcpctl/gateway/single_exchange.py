"""MCP 2026-07-28 requests on the MCP endpoints: one POST, one self-contained exchange.

Such a request carries no session: its `_meta` envelope says who asks, and the HTTP headers
that mirror it must agree with the body. Here it is checked, given a session for itself alone,
answered at once (`server/discover`, `subscriptions/listen`, a refusal), or made ready for the
hosts: without its envelope, its task id opened, its `requestState` opened into the round trip
it continues. What its answer needs back (a sealed requestState or task id) is its `Sealing`.
mcp_endpoint.py keeps the transport and serves what `prepare` hands back.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp.shared import inbound
from starlette.requests import Request
from starlette.responses import Response

from mcpctl.gateway import audit, subscriptions, tasks
from mcpctl.gateway.auth import Principal
from mcpctl.gateway.request_state import STATE_PREFIX, InvalidState, RequestStates
from mcpctl.gateway.responses import FastJSONResponse, endpoint_path, invalid, rpc_error
from mcpctl.gateway.sessions import ClientSession
from mcpctl.gateway.streams import event_stream, with_keepalive
from mcpctl.gateway.targets import Target, Unavailable, route
from mcpctl.mcp import bridge, jsonrpc, round_trips, validation, versions
from mcpctl.mcp.caller import PER_REQUEST_PREFIX
from mcpctl.mcp.jsonrpc import Message

UNSUPPORTED_PROTOCOL_VERSION = -32022
HEADER_MISMATCH = -32020


async def prepare(
    request: Request, target: Target, principal: Principal, message: Message
) -> tuple[ClientSession, Message, Sealing | None] | Response:
    """A 2026-07-28 request: self-contained, no session; the envelope says who asks, and the
    HTTP headers that mirror it (version, method, name) must agree with the body, since
    intermediaries route on them (the official SDK's checks). Returns what the transport
    serves (the request's own session, the message for the hosts, its sealing), or the
    response when the request is answered here."""
    meta = bridge.envelope(message) or {}
    version = meta.get(bridge.PROTOCOL_VERSION_KEY)
    checked = inbound.classify_inbound_request(
        message,
        headers=request.headers,
        supported_modern_versions=versions.SINGLE_EXCHANGE_REVISIONS,
    )
    duplicated = inbound.find_duplicated_routing_header(
        (name.decode("latin-1"), "") for name, _ in request.headers.raw
    )
    if duplicated:
        checked = inbound.InboundLadderRejection(
            HEADER_MISMATCH, f"the {duplicated} header appears more than once"
        )
    if isinstance(checked, inbound.InboundLadderRejection):
        data = checked.data
        if checked.code == UNSUPPORTED_PROTOCOL_VERSION:  # handshake revisions are served too
            data = {"supported": list(versions.SUPPORTED), "requested": version}
        request.app.state.metrics.refused.labels(endpoint_path(target), "header_mismatch").inc()
        body = jsonrpc.error(message.get("id"), checked.code, checked.message, data)
        return FastJSONResponse(body, status_code=400)
    version = checked.protocol_version
    try:
        message = validation.check(message, version)
    except validation.Invalid as error:
        return invalid(request, target, error)
    if not jsonrpc.is_request(message):
        return Response(status_code=202)  # 2026-07-28 defines no client notifications here
    session = ClientSession(
        id=f"{PER_REQUEST_PREFIX}{secrets.token_urlsafe(12)}",
        target=endpoint_path(target),
        principal=principal.email,
        protocol_version=version,
        client_info=meta.get(bridge.CLIENT_INFO_KEY) or {},
        capabilities=meta.get(bridge.CLIENT_CAPABILITIES_KEY) or {},
    )
    if message.get("method") == "subscriptions/listen":
        return await _subscription(request, target, session, message)
    if message.get("method") == "server/discover":
        try:
            info = await target.initialize(session.caller)
        except Unavailable as error:
            return rpc_error(503, jsonrpc.BACKEND_UNAVAILABLE, str(error), message["id"])
        result = {
            "supportedVersions": list(versions.SINGLE_EXCHANGE_REVISIONS),
            "capabilities": info["capabilities"],
            "instructions": info.get("instructions"),
            "resultType": "complete",
            "cacheScope": "private",
            "ttlMs": 0,
            "_meta": {bridge.SERVER_INFO_KEY: info.get("serverInfo", {})},
        }
        return FastJSONResponse(
            jsonrpc.result(message["id"], {k: v for k, v in result.items() if v is not None})
        )
    prepared = _for_hosts(request, target, principal, message, meta)
    if isinstance(prepared, Response):
        return prepared
    return (session, *prepared)


@dataclass(frozen=True)
class Sealing:
    """What a 2026-07-28 request's answer needs from mcpd: how to seal an `input_required`'s
    state, or, for a task request, the client's sealed task id to answer with."""

    method: str  # the client's, for the metrics (the hosts may get mcpd's own)
    seal: Callable[[str, str], str] | None = None  # (server, ticket) -> requestState
    task_id: str | None = None

    def sealed(self, response: Message) -> Message | None:
        """The backend's response with mcpd's seal on it: the client's task id, or an
        `input_required`'s ticket sealed into its requestState; None when it needs neither."""
        if self.task_id is not None:
            return tasks.with_task_id(response, self.task_id)
        result = response.get("result")
        if self.seal and isinstance(result, dict) and round_trips.TICKET_KEY in result:
            result = dict(result)
            ticket, server = result.pop(round_trips.TICKET_KEY), result.pop(round_trips.SERVER_KEY)
            result["requestState"] = self.seal(server, ticket)
            return {**response, "result": result}
        return None


def _for_hosts(
    request: Request, target: Target, principal: Principal, message: Message, meta: dict[str, Any]
) -> tuple[Message, Sealing | None] | Response:
    """A 2026-07-28 request as the hosts get it: without its envelope; one that may need the
    client's input says what the client can answer, and a retry carrying mcpd's requestState
    continues the request that state names (see mcpctl/mcp/round_trips.py)."""
    plain = bridge.without_envelope(message)
    method = str(message.get("method"))
    endpoint = endpoint_path(target)
    if method in tasks.METHODS:
        params = plain.get("params") or {}
        try:
            task = request.app.state.task_ids.open(params.get("taskId"), principal.email, endpoint)
        except tasks.UnknownTask as error:
            audit.denied(request, "policy", str(error), principal=principal.email, message=message)
            return FastJSONResponse(
                jsonrpc.error(message["id"], jsonrpc.INVALID_PARAMS, str(error))
            )
        routed = {**plain, "params": {**params, "taskId": task.task_id}}
        return route(routed, task.server), Sealing(method, task_id=params["taskId"])
    if method not in round_trips.INPUT_REQUIRED_METHODS:
        return plain, None
    states: RequestStates = request.app.state.request_states

    def seal(server: str, ticket: str) -> str:
        return states.seal(principal.email, endpoint, message, server, ticket)

    sealing = Sealing(method, seal)
    params = plain.get("params") or {}
    state = params.get("requestState")
    if not (isinstance(state, str) and state.startswith(STATE_PREFIX)):
        # Not mcpd's: a 2026 backend's own state passes through to it.
        can_answer = meta.get(bridge.CLIENT_CAPABILITIES_KEY) or {}
        capabilities = [c for c in round_trips.NEEDS.values() if c in can_answer]
        return round_trips.for_round_trips(plain, capabilities), sealing
    try:
        resumption = states.open(state, principal.email, endpoint, message)
    except InvalidState as error:
        request.app.state.metrics.refused.labels(endpoint, "invalid_request_state").inc()
        detail = f"requestState: {error}"
        audit.denied(
            request, "policy", detail, status=400, principal=principal.email, message=message
        )
        return rpc_error(
            400, jsonrpc.INVALID_PARAMS, f"Invalid params: requestState: {error}", message["id"]
        )
    responses = params.get("inputResponses")
    answers = {k: {"result": v} for k, v in (responses or {}).items() if isinstance(v, dict)}
    resume_params: dict[str, Any] = {"ticket": resumption.ticket, "answers": answers}
    if "_meta" in params:
        resume_params["_meta"] = params["_meta"]
    resume = {"jsonrpc": "2.0", "id": message["id"], "method": round_trips.RESUME}
    return route({**resume, "params": resume_params}, resumption.server), sealing


async def _subscription(
    request: Request, target: Target, session: ClientSession, message: Message
) -> Response:
    try:
        subscriptions.requested(message)
        info = await target.initialize(session.caller)
    except subscriptions.InvalidFilter as error:
        return rpc_error(400, jsonrpc.INVALID_PARAMS, str(error), message["id"])
    except Unavailable as error:
        return rpc_error(503, jsonrpc.BACKEND_UNAVAILABLE, str(error), message["id"])
    stream = subscriptions.listen(target, session, message, info.get("capabilities") or {})
    return event_stream(with_keepalive(stream))
