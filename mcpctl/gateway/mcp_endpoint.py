"""The Streamable HTTP MCP endpoints: `/mcp/servers/{name}` and `/mcp/projects/{name}`.

POST carries JSON-RPC (answered as JSON, or as an SSE stream when the server sends anything
before its response), GET opens the stream for server-initiated messages, DELETE ends the
session. Sessions (`Mcp-Session-Id`) belong to the gateway; the replica multiplexes them
onto its one backend session.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from mcp.shared import inbound
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcpctl.gateway import audit, policy, rate_limit, subscriptions, tasks
from mcpctl.gateway.auth import Principal
from mcpctl.gateway.context import context_of
from mcpctl.gateway.exposure import Exposure
from mcpctl.gateway.limits import Limits
from mcpctl.gateway.request_state import STATE_PREFIX, InvalidState, RequestStates
from mcpctl.gateway.resource_metadata import challenge
from mcpctl.gateway.sessions import ClientSession, SessionRegistry, TooManySessions
from mcpctl.gateway.streams import event_stream, sse, with_keepalive
from mcpctl.gateway.targets import (
    BACKEND_VERSION,
    DENIED_KEY,
    ROUTE_KEY,
    SEPARATOR,
    ProjectTarget,
    ServerTarget,
    Target,
    Unavailable,
    final_response,
    route,
)
from mcpctl.mcp import bridge, jsonrpc, round_trips, validation, versions
from mcpctl.mcp.caller import PER_REQUEST_PREFIX
from mcpctl.mcp.jsonrpc import Message
from mcpctl.mcp.multiplexer import READ_ONLY
from mcpctl.models.kinds import PROMPT, Resource
from mcpctl.models.prompt import PromptSpec
from mcpctl.observability import tracing
from mcpctl.observability.metrics import method_label
from mcpctl.store.errors import NotFound
from mcpctl.store.repositories.projects import PROJECTS
from mcpctl.store.repositories.specs import SERVERS

SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
# A project loaded for an MCP request serves the next ones this long, unless it changes here
# first (then at once); changes made through another mcpd replica apply within this.
PROJECT_CACHE_SECONDS = 5.0
UNSUPPORTED_PROTOCOL_VERSION = -32022
HEADER_MISMATCH = -32020
T = TypeVar("T")


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return jsonrpc.dumps(content)


def _rpc_error(status: int, code: int, message: str, request_id: Any = None) -> JSONResponse:
    return FastJSONResponse(jsonrpc.error(request_id, code, message), status_code=status)


async def _target(request: Request, principal: Principal) -> Target | Response:
    """The endpoint, with the principal's rights checked now (on every request: a demoted
    admin or a removed member stops at once). A project the principal is not in answers
    exactly like a missing one."""
    context = context_of(request)
    kind, name = request.scope["path"].split("/")[2], request.path_params["name"]
    runtime = request.app.state.runtime

    if kind == "servers":
        if not principal.is_admin:
            audit.denied(
                request, "forbidden", "a member on a server endpoint", principal=principal.email
            )
            return _rpc_error(
                403, jsonrpc.INVALID_REQUEST, "members reach servers through their projects"
            )
        registry: SessionRegistry = request.app.state.sessions
        if registry.get(request.headers.get(SESSION_HEADER, ""), f"servers/{name}") is None:
            try:
                await context.transaction(lambda s: SERVERS.get(s, name))
            except NotFound as error:
                return _rpc_error(404, jsonrpc.INVALID_REQUEST, error.message)
        return ServerTarget(runtime, name)

    def load_project(session: Session) -> tuple[Any, list[Resource[PromptSpec]]]:
        project = PROJECTS.get(session, name)
        return project, context.repositories[PROMPT].list(session, name)

    now = time.monotonic()
    cached = context.project_cache.get(name)
    if cached is None or cached[0] < now:
        # One load for all the requests that find it missing (no stampede on the store).
        loading = asyncio.ensure_future(context.transaction(load_project))
        cached = context.project_cache[name] = (now + PROJECT_CACHE_SECONDS, loading)
    try:
        project, prompts = await asyncio.shield(cached[1])
    except NotFound:
        if context.project_cache.get(name) is cached:
            del context.project_cache[name]
        return _rpc_error(404, jsonrpc.INVALID_REQUEST, f"project {name!r} not found")
    if not policy.in_project(principal, project):
        audit.denied(
            request, "not_found", "not in the project", status=404, principal=principal.email
        )
        return _rpc_error(404, jsonrpc.INVALID_REQUEST, f"project {name!r} not found")
    request.state.rate_limit = project.spec.rate_limit  # for rate_limit.check
    loaded = (list(project.spec.servers), prompts)

    async def load() -> tuple[list[str], list[Resource[PromptSpec]]]:
        return loaded

    view, shown = None, name
    if "view" in request.path_params:
        shown = f"{name}/views/{request.path_params['view']}"
        views = getattr(project.spec, "views", None) or []
        view = next((v for v in views if v.name == request.path_params["view"]), None)
        if view is None:
            return _rpc_error(404, jsonrpc.INVALID_REQUEST, f"view {shown!r} not found")
    unbound = principal.is_admin or principal.email == project.spec.owner
    exposure = Exposure.of(project.spec, principal.email, principal.groups, unbound, view)
    owners = context.resource_owners.setdefault(name, {})
    return ProjectTarget(runtime, shown, load, request.app.state.limits, owners, exposure)


async def _caller(request: Request) -> tuple[Principal, Target] | Response:
    """Who asks and which endpoint, or the error response (401, 403, 404)."""
    principal = _principal(request)
    if isinstance(principal, Response):
        return principal
    target = await _target(request, principal)
    if isinstance(target, Response):
        return target
    return principal, target


def _principal(request: Request) -> Principal | Response:
    if isinstance(request.user, Principal):
        return request.user
    audit.denied(request, "unauthenticated", status=401)
    response = _rpc_error(
        401,
        jsonrpc.INVALID_REQUEST,
        "authentication required: send 'Authorization: Bearer <token>'",
    )
    response.headers["WWW-Authenticate"] = challenge(request)  # RFC 9728: where to log in
    return response


def _session(
    request: Request, registry: SessionRegistry, target: Target, principal: Principal
) -> ClientSession | Response:
    session_id = request.headers.get(SESSION_HEADER)
    if not session_id:
        return _rpc_error(
            400, jsonrpc.INVALID_REQUEST, f"Bad Request: {SESSION_HEADER} header is required"
        )
    session = registry.get(session_id, _path(target))
    if session is not None and session.principal != principal.email:
        audit.denied(request, "forbidden", "another principal's session", status=404)
    if session is None or session.principal != principal.email:
        return _rpc_error(404, jsonrpc.INVALID_REQUEST, "Session not found: initialize again")
    return session


def _path(target: Target) -> str:
    return f"{'servers' if isinstance(target, ServerTarget) else 'projects'}/{target.name}"


async def post(request: Request) -> Response:
    caller = await _caller(request)
    if isinstance(caller, Response):
        return caller
    principal, target = caller
    limits: Limits = request.app.state.limits
    metrics = request.app.state.metrics
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as error:
        return _rpc_error(400, jsonrpc.PARSE_ERROR, f"Parse error: {error}")
    messages = body if isinstance(body, list) else [body]
    if not messages:
        return _rpc_error(400, jsonrpc.INVALID_REQUEST, "Invalid Request: an empty batch")
    if len(messages) > limits.max_batch:
        metrics.refused.labels(_path(target), "batch_too_large").inc()
        return _rpc_error(
            400,
            jsonrpc.INVALID_REQUEST,
            f"Invalid Request: a batch of {len(messages)} messages; "
            f"the limit is {limits.max_batch}",
        )
    if (limited := await rate_limit.check(request, principal, messages)) is not None:
        return limited  # 429
    registry: SessionRegistry = request.app.state.sessions

    first = messages[0]
    if len(messages) == 1 and isinstance(first, dict) and first.get("method") == "initialize":
        version = versions.negotiate((first.get("params") or {}).get("protocolVersion"))
        try:
            validation.check(first, version)
        except validation.Invalid as error:
            return _invalid(request, target, error)
        return await _initialize(request, registry, target, principal, first, version)
    if (
        len(messages) == 1
        and not request.headers.get(SESSION_HEADER)
        and isinstance(first, dict)
        and bridge.envelope(first)
    ):
        return await _single_exchange(request, target, principal, first)

    session = _session(request, registry, target, principal)
    if isinstance(session, Response):
        return session
    try:
        checked = [validation.check(m, session.protocol_version) for m in messages]
    except validation.Invalid as error:
        return _invalid(request, target, error)
    for message in checked:
        if not jsonrpc.is_request(message):
            await target.deliver(session, message)
    requests = [m for m in checked if jsonrpc.is_request(m)]
    if not requests:
        return Response(status_code=202)
    if len(requests) > 1:  # a 2025-03-26 batch: one JSON array of responses
        answers = await _unless_disconnected(
            request, asyncio.gather(*(_final(request, target, session, r) for r in requests))
        )
        return FastJSONResponse(answers)
    return await _respond(request, target, session, requests[0])


def _invalid(request: Request, target: Target, error: validation.Invalid) -> Response:
    """A malformed message: answered here, never forwarded to the shared backend."""
    request.app.state.metrics.refused.labels(_path(target), "invalid").inc()
    return FastJSONResponse(error.response(), status_code=400)


class ClientGone(Exception):
    """The client left (or mcpd is stopping) while its request was in flight."""

    def __init__(self, request_id: Any) -> None:
        super().__init__("the client went away")
        self.request_id = request_id


async def _unless_disconnected(request: Request, work: Awaitable[T], request_id: Any = None) -> T:
    """`work`'s result; if the client disconnects first, this handler is cancelled where it
    waits, and with it the request at the backend."""
    handler = asyncio.current_task()
    assert handler is not None
    gone = asyncio.ensure_future(_disconnected(request))
    waiting = True

    def cancel_handler(watcher: asyncio.Future[None]) -> None:
        if waiting and not watcher.cancelled():
            handler.cancel("the client disconnected")

    gone.add_done_callback(cancel_handler)
    try:
        return await work
    except asyncio.CancelledError:
        if gone.done() and not gone.cancelled():
            raise ClientGone(request_id) from None
        raise
    finally:
        waiting = False
        gone.cancel()


async def on_client_gone(request: Request, exc: Exception) -> Response:
    """Read only when mcpd is shutting down (a client that left reads nothing)."""
    assert isinstance(exc, ClientGone)
    text = (
        "the request was cancelled: the client went away or mcpd is shutting down; "
        "it may or may not have run"
    )
    return _rpc_error(503, jsonrpc.INTERNAL_ERROR, text, exc.request_id)


async def _disconnected(request: Request) -> None:
    """Returns when the client has closed its connection (the body was read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _initialize(
    request: Request,
    registry: SessionRegistry,
    target: Target,
    principal: Principal,
    message: Message,
    version: str,
) -> Response:
    params = message.get("params") or {}
    limits: Limits = request.app.state.limits
    described = json.dumps([params.get("clientInfo"), params.get("capabilities")])
    if len(described) > limits.max_client_info_bytes:
        request.app.state.metrics.refused.labels(_path(target), "client_info_too_large").inc()
        return _rpc_error(
            400,
            jsonrpc.INVALID_PARAMS,
            f"Invalid params: clientInfo and capabilities take {len(described)} bytes; "
            f"the limit is {limits.max_client_info_bytes}",
            message["id"],
        )
    try:
        session = registry.create(_path(target), principal.email, version, params)
    except TooManySessions as error:
        request.app.state.metrics.refused.labels(_path(target), "too_many_sessions").inc()
        return _rpc_error(429, jsonrpc.INVALID_REQUEST, str(error), message["id"])
    try:
        info = await target.initialize(session.caller)
    except Unavailable as error:
        registry.end(session.id)
        return _rpc_error(503, jsonrpc.BACKEND_UNAVAILABLE, str(error), message["id"])
    request.app.state.metrics.sessions.set(registry.count())
    session.backend_version = info.pop(BACKEND_VERSION, None)
    result = jsonrpc.result(message["id"], {"protocolVersion": version, **info})
    return FastJSONResponse(result, headers={SESSION_HEADER: session.id})


async def _single_exchange(
    request: Request, target: Target, principal: Principal, message: Message
) -> Response:
    """A 2026-07-28 request: self-contained, no session; the envelope says who asks, and the
    HTTP headers that mirror it (version, method, name) must agree with the body, since
    intermediaries route on them (the official SDK's checks)."""
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
        request.app.state.metrics.refused.labels(_path(target), "header_mismatch").inc()
        body = jsonrpc.error(message.get("id"), checked.code, checked.message, data)
        return FastJSONResponse(body, status_code=400)
    version = checked.protocol_version
    try:
        message = validation.check(message, version)
    except validation.Invalid as error:
        return _invalid(request, target, error)
    if not jsonrpc.is_request(message):
        return Response(status_code=202)  # 2026-07-28 defines no client notifications here
    session = ClientSession(
        id=f"{PER_REQUEST_PREFIX}{secrets.token_urlsafe(12)}",
        target=_path(target),
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
            return _rpc_error(503, jsonrpc.BACKEND_UNAVAILABLE, str(error), message["id"])
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
    return await _respond(request, target, session, *prepared)


@dataclass(frozen=True)
class Sealing:
    """What a 2026-07-28 request's answer needs from mcpd: how to seal an `input_required`'s
    state, or, for a task request, the client's sealed task id to answer with."""

    method: str  # the client's, for the metrics (the hosts may get mcpd's own)
    seal: Callable[[str, str], str] | None = None  # (server, ticket) -> requestState
    task_id: str | None = None


def _for_hosts(
    request: Request, target: Target, principal: Principal, message: Message, meta: dict[str, Any]
) -> tuple[Message, Sealing | None] | Response:
    """A 2026-07-28 request as the hosts get it: without its envelope; one that may need the
    client's input says what the client can answer, and a retry carrying mcpd's requestState
    continues the request that state names (see mcpctl/mcp/round_trips.py)."""
    plain = bridge.without_envelope(message)
    method = str(message.get("method"))
    endpoint = _path(target)
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
        return _rpc_error(
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
        return _rpc_error(400, jsonrpc.INVALID_PARAMS, str(error), message["id"])
    except Unavailable as error:
        return _rpc_error(503, jsonrpc.BACKEND_UNAVAILABLE, str(error), message["id"])
    stream = subscriptions.listen(target, session, message, info.get("capabilities") or {})
    return event_stream(with_keepalive(stream))


async def _final(
    request: Request, target: Target, session: ClientSession, message: Message
) -> Message:
    return await final_response(_observed(request, target, session, message), message.get("id"))


def _observed(
    request: Request,
    target: Target,
    session: ClientSession,
    message: Message,
    sealing: Sealing | None = None,
) -> AsyncGenerator[Message, None]:
    # -- tracing hook (mcpctl/observability/tracing.py): off, nothing more than this test --
    if not tracing.enabled:
        return _served(request, target, session, message, sealing)
    attributes = {
        "mcpctl.endpoint": _path(target),
        "enduser.id": session.principal,
        "mcp.protocol.version": session.protocol_version,
    }
    if isinstance(target, ServerTarget):
        attributes["mcpctl.server"] = target.name
    elif ROUTE_KEY in message or SEPARATOR in str((message.get("params") or {}).get("name")):
        attributes["mcpctl.server"] = _server_of(target, message)
    return tracing.gateway_request(
        message,
        sealing.method if sealing else str(message.get("method")),
        request.headers,
        attributes,
        lambda traced: _served(request, target, session, traced, sealing),
    )
    # -- end of the tracing hook --


async def _served(
    request: Request,
    target: Target,
    session: ClientSession,
    message: Message,
    sealing: Sealing | None = None,
) -> AsyncGenerator[Message, None]:
    """The target's stream for one request, within the request deadline, counted in the
    metrics. Past the deadline the client gets an error and the backend a cancellation."""
    metrics = request.app.state.metrics
    limits: Limits = request.app.state.limits
    method = sealing.method if sealing else str(message.get("method"))
    labels = (_path(target), method_label(method))
    started = time.perf_counter()
    single_exchange = session.protocol_version in versions.SINGLE_EXCHANGE_REVISIONS
    stream = target.handle(session, message)
    deadline = asyncio.get_running_loop().time() + limits.request_timeout
    answered = False
    try:
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    item = await anext(stream)
                    if jsonrpc.is_response(item):
                        item = await _answer(request, target, session, message, item, sealing)
            except StopAsyncIteration:
                if not answered:  # never silence: the client hears that no answer came
                    raise Unavailable(_unanswered(target, method)) from None
                return
            except TimeoutError:
                metrics.refused.labels(_path(target), "timeout").inc()
                metrics.errors.labels(*labels).inc()
                audit.observed(request, session.principal, message, None, started, method)
                yield jsonrpc.error(
                    message.get("id"),
                    jsonrpc.REQUEST_TIMEOUT,
                    f"{method} got no answer within {limits.request_timeout:g} s "
                    "(MCPD_REQUEST_TIMEOUT); it was cancelled",
                )
                return
            if single_exchange and jsonrpc.is_request(item):
                # No back-channel on 2026-07-28: the backend's question gets a clear no.
                refusal = jsonrpc.error(
                    item["id"], jsonrpc.METHOD_NOT_FOUND, "the client has no back-channel"
                )
                await target.deliver(session, refusal)
                continue
            if jsonrpc.is_response(item):
                answered = True
                if session.backend_version != session.protocol_version:
                    item = bridge.response_for(method, session.protocol_version, item)
                metrics.latency.labels(*labels).observe(time.perf_counter() - started)
                metrics.requests.labels(*labels).inc()
                if "error" in item:
                    metrics.errors.labels(*labels).inc()
                if item.pop(DENIED_KEY, False):  # the project's exposure or access rules
                    audit.denied(
                        request, "tool_denied", principal=session.principal, message=message
                    )
                else:
                    audit.observed(request, session.principal, message, item, started, method)
            yield item
    except Unavailable as error:
        metrics.errors.labels(*labels).inc()
        failed = jsonrpc.error(message.get("id"), jsonrpc.BACKEND_UNAVAILABLE, str(error))
        audit.observed(request, session.principal, message, failed, started, method)
        yield failed
    finally:
        await stream.aclose()


def _unanswered(target: Target, method: str) -> str:
    """Why a request's stream ended without its response, as its client is told."""
    text = f"{method} ended without an answer from {_path(target)}"
    return text if method in READ_ONLY else f"{text}; it may or may not have run"


def _no_answer(target: Target, message: Message, sealing: Sealing | None) -> Message:
    """The error for a stream that ended without a response (_served ends none so)."""
    method = sealing.method if sealing else str(message.get("method"))
    return jsonrpc.error(
        message.get("id"), jsonrpc.BACKEND_UNAVAILABLE, _unanswered(target, method)
    )


async def _answer(
    request: Request,
    target: Target,
    session: ClientSession,
    message: Message,
    response: Message,
    sealing: Sealing | None,
) -> Message:
    """The backend's response as this client gets it: an `input_required` with its ticket
    sealed, a task handle with its id sealed, or, for a client that takes no tasks, the
    task's final result."""
    if sealing is not None and sealing.task_id is not None:
        return tasks.with_task_id(response, sealing.task_id)
    result = response.get("result")
    if sealing and sealing.seal and isinstance(result, dict) and round_trips.TICKET_KEY in result:
        result = dict(result)
        ticket, server = result.pop(round_trips.TICKET_KEY), result.pop(round_trips.SERVER_KEY)
        result["requestState"] = sealing.seal(server, ticket)
        return {**response, "result": result}
    if not tasks.is_task(response):
        return response
    server = _server_of(target, message)
    task_id = str(response["result"].get("taskId"))
    if tasks.takes_tasks(session.capabilities):
        sealed = request.app.state.task_ids.seal(session.principal, _path(target), server, task_id)
        return tasks.with_task_id(response, sealed)

    async def ask(poll: Message) -> Message:
        return await final_response(target.handle(session, route(poll, server)), None)

    try:
        return await tasks.until_done(response, ask)
    except asyncio.CancelledError:  # past the deadline: the backend should stop too
        cancel = asyncio.ensure_future(ask(tasks.cancel_request(task_id)))
        cancel.add_done_callback(lambda t: t.cancelled() or t.exception())
        raise


def _server_of(target: Target, message: Message) -> str:
    """The server behind a request of this endpoint."""
    if ROUTE_KEY in message:
        return str(message[ROUTE_KEY])
    if isinstance(target, ServerTarget):
        return target.name
    return str((message.get("params") or {}).get("name")).partition(SEPARATOR)[0]


async def _respond(
    request: Request,
    target: Target,
    session: ClientSession,
    message: Message,
    sealing: Sealing | None = None,
) -> Response:
    """The answer to one request: JSON, or an SSE stream once something precedes it. A
    request the backend's end left unanswered gets a JSON-RPC error, never an HTTP error."""
    stream = _observed(request, target, session, message, sealing)
    wants_sse = "text/event-stream" in request.headers.get("accept", "")
    first = await _unless_disconnected(request, anext(stream, None), message.get("id"))
    if first is None or jsonrpc.is_response(first):
        await stream.aclose()
        return FastJSONResponse(first or _no_answer(target, message, sealing))
    if not wants_sse:

        async def response() -> Message | None:
            async for item in stream:
                if jsonrpc.is_response(item):
                    return item
            return None

        final = await _unless_disconnected(request, response(), message.get("id"))
        await stream.aclose()
        return FastJSONResponse(final or _no_answer(target, message, sealing))

    async def events() -> AsyncIterator[bytes]:
        try:
            yield sse(first)
            async for item in stream:
                yield sse(item)
                if jsonrpc.is_response(item):
                    return
        finally:
            await stream.aclose()

    return event_stream(events())


async def get(request: Request) -> Response:
    caller = await _caller(request)
    if isinstance(caller, Response):
        return caller
    principal, target = caller
    if "text/event-stream" not in request.headers.get("accept", ""):
        return _rpc_error(
            406, jsonrpc.INVALID_REQUEST, "Not Acceptable: GET needs Accept: text/event-stream"
        )
    session = _session(request, request.app.state.sessions, target, principal)
    if isinstance(session, Response):
        return session

    return event_stream(with_keepalive(target.listen(session)))


async def delete(request: Request) -> Response:
    caller = await _caller(request)
    if isinstance(caller, Response):
        return caller
    principal, target = caller
    registry: SessionRegistry = request.app.state.sessions
    session = _session(request, registry, target, principal)
    if isinstance(session, Response):
        return session
    registry.end(session.id)
    request.app.state.metrics.sessions.set(registry.count())
    return Response(status_code=204)


def routes() -> list[Route]:
    paths = ("/mcp/servers/{name}", "/mcp/projects/{name}", "/mcp/projects/{name}/views/{view}")
    return [
        Route(path, handler, methods=[method])
        for path in paths
        for handler, method in ((post, "POST"), (get, "GET"), (delete, "DELETE"))
    ]
