"""The Streamable HTTP MCP endpoints: `/mcp/servers/{name}` and `/mcp/projects/{name}`.

POST carries JSON-RPC (answered as JSON, or as an SSE stream when the server sends anything
before its response), GET opens the stream for server-initiated messages, DELETE ends the
session. Sessions (`Mcp-Session-Id`) belong to the gateway; the replica multiplexes them
onto its one backend session. Here: the transport, the rights checked per request,
`initialize` and its sessions, batches, and serving one request (deadline, metrics, audit,
tracing, tasks). A 2026-07-28 request (no session, one exchange) is checked and prepared in
single_exchange.py, then served here like any other.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import Any, TypeVar

import orjson
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mcpctl.gateway import audit, policy, rate_limit, single_exchange, tasks, unauthenticated
from mcpctl.gateway.auth import Principal
from mcpctl.gateway.context import context_of
from mcpctl.gateway.exposure import Exposure
from mcpctl.gateway.limits import Limits
from mcpctl.gateway.notification_size import oversized_notification
from mcpctl.gateway.resource_metadata import challenge
from mcpctl.gateway.responses import FastJSONResponse, endpoint_path, invalid, rpc_error
from mcpctl.gateway.sessions import ClientSession, SessionRegistry, TooManySessions
from mcpctl.gateway.single_exchange import Sealing
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
from mcpctl.mcp import bridge, jsonrpc, validation, versions
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
T = TypeVar("T")


async def _target(
    request: Request, principal: Principal
) -> tuple[Target, ClientSession | None] | Response:
    """The endpoint, with the principal's rights checked now (on every request: a demoted
    admin or a removed member stops at once). A project the principal is not in answers
    exactly like a missing one. A server endpoint also gives the session its request names,
    if any: looked up here (a known session spares the store), not again by `_session`."""
    context = context_of(request)
    kind, name = request.scope["path"].split("/")[2], request.path_params["name"]
    runtime = request.app.state.runtime

    if kind == "servers":
        if not principal.is_admin:
            audit.denied(
                request, "forbidden", "a member on a server endpoint", principal=principal.email
            )
            return rpc_error(
                403, jsonrpc.INVALID_REQUEST, "members reach servers through their projects"
            )
        registry: SessionRegistry = request.app.state.sessions
        known = registry.get(request.headers.get(SESSION_HEADER, ""), f"servers/{name}")
        if known is None:
            try:
                await context.transaction(lambda s: SERVERS.get(s, name))
            except NotFound as error:
                return rpc_error(404, jsonrpc.INVALID_REQUEST, error.message)
        return ServerTarget(runtime, name), known

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
        return rpc_error(404, jsonrpc.INVALID_REQUEST, f"project {name!r} not found")
    if not policy.in_project(principal, project):
        audit.denied(
            request, "not_found", "not in the project", status=404, principal=principal.email
        )
        return rpc_error(404, jsonrpc.INVALID_REQUEST, f"project {name!r} not found")
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
            return rpc_error(404, jsonrpc.INVALID_REQUEST, f"view {shown!r} not found")
    unbound = principal.is_admin or principal.email == project.spec.owner
    exposure = Exposure.of(project.spec, principal.email, principal.groups, unbound, view)
    owners = context.resource_owners.setdefault(name, {})
    return ProjectTarget(runtime, shown, load, request.app.state.limits, owners, exposure), None


async def _caller(
    request: Request,
) -> tuple[Principal, Target, ClientSession | None] | Response:
    """Who asks, which endpoint and the session `_target` found, or the error response
    (401, 403, 404)."""
    principal = _principal(request)
    if isinstance(principal, Response):
        return principal
    target = await _target(request, principal)
    if isinstance(target, Response):
        return target
    return principal, *target


def _principal(request: Request) -> Principal | Response:
    if isinstance(request.user, Principal):
        return request.user
    if (limited := unauthenticated.over_budget(request)) is not None:
        return limited
    audit.denied(request, "unauthenticated", status=401)
    response = rpc_error(
        401,
        jsonrpc.INVALID_REQUEST,
        "authentication required: send 'Authorization: Bearer <token>'",
    )
    response.headers["WWW-Authenticate"] = challenge(request)  # RFC 9728: where to log in
    return response


def _session(
    request: Request,
    registry: SessionRegistry,
    target: Target,
    principal: Principal,
    known: ClientSession | None,
) -> ClientSession | Response:
    """The request's session, for its principal only; `known` if `_target` found it."""
    session_id = request.headers.get(SESSION_HEADER)
    if not session_id:
        return rpc_error(
            400, jsonrpc.INVALID_REQUEST, f"Bad Request: {SESSION_HEADER} header is required"
        )
    session = known or registry.get(session_id, endpoint_path(target))
    if session is not None and session.principal != principal.email:
        audit.denied(request, "forbidden", "another principal's session", status=404)
    if session is None or session.principal != principal.email:
        return rpc_error(404, jsonrpc.INVALID_REQUEST, "Session not found: initialize again")
    return session


async def post(request: Request) -> Response:
    caller = await _caller(request)
    if isinstance(caller, Response):
        return caller
    principal, target, known = caller
    limits: Limits = request.app.state.limits
    metrics = request.app.state.metrics
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as error:
        return rpc_error(400, jsonrpc.PARSE_ERROR, f"Parse error: {error}")
    messages = body if isinstance(body, list) else [body]
    if not messages:
        return rpc_error(400, jsonrpc.INVALID_REQUEST, "Invalid Request: an empty batch")
    if len(messages) > limits.max_batch:
        metrics.refused.labels(endpoint_path(target), "batch_too_large").inc()
        return rpc_error(
            400,
            jsonrpc.INVALID_REQUEST,
            f"Invalid Request: a batch of {len(messages)} messages; "
            f"the limit is {limits.max_batch}",
        )
    if (oversized := oversized_notification(request, target, messages)) is not None:
        return oversized  # 413
    if (limited := await rate_limit.check(request, principal, messages)) is not None:
        return limited  # 429
    registry: SessionRegistry = request.app.state.sessions

    first = messages[0]
    if len(messages) == 1 and isinstance(first, dict) and first.get("method") == "initialize":
        version = versions.negotiate((first.get("params") or {}).get("protocolVersion"))
        try:
            validation.check(first, version)
        except validation.Invalid as error:
            return invalid(request, target, error)
        return await _initialize(request, registry, target, principal, first, version)
    if (
        len(messages) == 1
        and not request.headers.get(SESSION_HEADER)
        and isinstance(first, dict)
        and bridge.envelope(first)
    ):
        prepared = await single_exchange.prepare(request, target, principal, first)
        if isinstance(prepared, Response):
            return prepared
        return await _respond(request, target, *prepared)

    session = _session(request, registry, target, principal, known)
    if isinstance(session, Response):
        return session
    try:
        checked = [validation.check(m, session.protocol_version) for m in messages]
    except validation.Invalid as error:
        return invalid(request, target, error)
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
    return rpc_error(503, jsonrpc.INTERNAL_ERROR, text, exc.request_id)


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
        request.app.state.metrics.refused.labels(
            endpoint_path(target), "client_info_too_large"
        ).inc()
        return rpc_error(
            400,
            jsonrpc.INVALID_PARAMS,
            f"Invalid params: clientInfo and capabilities take {len(described)} bytes; "
            f"the limit is {limits.max_client_info_bytes}",
            message["id"],
        )
    try:
        session = registry.create(endpoint_path(target), principal.email, version, params)
    except TooManySessions as error:
        request.app.state.metrics.refused.labels(endpoint_path(target), "too_many_sessions").inc()
        return rpc_error(429, jsonrpc.INVALID_REQUEST, str(error), message["id"])
    try:
        info = await target.initialize(session.caller)
    except Unavailable as error:
        registry.end(session.id)
        return rpc_error(503, jsonrpc.BACKEND_UNAVAILABLE, str(error), message["id"])
    request.app.state.metrics.sessions.set(registry.count())
    session.backend_version = info.pop(BACKEND_VERSION, None)
    result = jsonrpc.result(message["id"], {"protocolVersion": version, **info})
    return FastJSONResponse(result, headers={SESSION_HEADER: session.id})


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
        "mcpctl.endpoint": endpoint_path(target),
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
    labels = (endpoint_path(target), method_label(method))
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
                metrics.refused.labels(endpoint_path(target), "timeout").inc()
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
    text = f"{method} ended without an answer from {endpoint_path(target)}"
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
    if sealing is not None and (answer := sealing.sealed(response)) is not None:
        return answer
    if not tasks.is_task(response):
        return response
    server = _server_of(target, message)
    task_id = str(response["result"].get("taskId"))
    if tasks.takes_tasks(session.capabilities):
        sealed = request.app.state.task_ids.seal(
            session.principal, endpoint_path(target), server, task_id
        )
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
    principal, target, known = caller
    if "text/event-stream" not in request.headers.get("accept", ""):
        return rpc_error(
            406, jsonrpc.INVALID_REQUEST, "Not Acceptable: GET needs Accept: text/event-stream"
        )
    session = _session(request, request.app.state.sessions, target, principal, known)
    if isinstance(session, Response):
        return session

    return event_stream(with_keepalive(target.listen(session)))


async def delete(request: Request) -> Response:
    caller = await _caller(request)
    if isinstance(caller, Response):
        return caller
    principal, target, known = caller
    registry: SessionRegistry = request.app.state.sessions
    session = _session(request, registry, target, principal, known)
    if isinstance(session, Response):
        return session
    registry.end(session.id)
    request.app.state.metrics.sessions.set(registry.count())
    return Response(status_code=204)


async def no_endpoint(request: Request) -> Response:
    """`/mcp` (a newcomer's first guess) and any other path under it: say where the
    endpoints are, as a JSON-RPC error an MCP client shows, not a bare 404."""
    return rpc_error(
        404,
        jsonrpc.INVALID_REQUEST,
        f"no MCP endpoint at {request.url.path[:200]!r}: mcpd has one per server, "
        "/mcp/servers/<name>, and one per project, /mcp/projects/<name> "
        "(`mcpctl get servers` and `mcpctl get projects` list them)",
    )


def routes() -> list[Route]:
    paths = ("/mcp/servers/{name}", "/mcp/projects/{name}", "/mcp/projects/{name}/views/{view}")
    methods = ["POST", "GET", "DELETE"]
    return [
        *(
            Route(path, handler, methods=[method])
            for path in paths
            for handler, method in ((post, "POST"), (get, "GET"), (delete, "DELETE"))
        ),
        Route("/mcp", no_endpoint, methods=methods),
        Route("/mcp/{rest:path}", no_endpoint, methods=methods),
    ]
