"""What an MCP endpoint fronts: one server, or a project aggregating several.

A project lists its servers' tools, prompts and resources as `server__name` and routes calls
back by that prefix; its stored prompts are served beside them.

What a client gives back to use a listed item (a tool's or prompt's name, a resource's URI, a
template) is listed once: the first definition, in the project's server order and then each
server's own, is the one shown, and a later one of the same name (a server listing a tool
twice, two servers listing one URI) is left out and logged. A read goes to the server whose
resource or template was shown; a call goes by name to its server, which sees only the name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Protocol

from mcpctl import __version__
from mcpctl.actors.runtime import Runtime
from mcpctl.gateway.exposure import Exposure
from mcpctl.gateway.limits import Limits
from mcpctl.gateway.sessions import ClientSession
from mcpctl.mcp import jsonrpc
from mcpctl.mcp.caller import Caller
from mcpctl.mcp.jsonrpc import Message
from mcpctl.mcp.uri_templates import matches
from mcpctl.models.kinds import Resource
from mcpctl.models.prompt import PLACEHOLDER, PromptSpec

log = logging.getLogger(__name__)
BACKEND_VERSION = "mcpd/backendVersion"  # in what `initialize` returns: the backends' revision
SEPARATOR = "__"
# On a message mcpd makes (a round trip's continuation, a task's poll): the member server it is
# for. Clients cannot set it: their messages keep only JSON-RPC members (validation.check).
ROUTE_KEY = "mcpd/server"
# On an answer a project gives: its policy refused the name (audited as denied, never sent).
DENIED_KEY = "mcpd/denied"
TRACE_CONTEXT = frozenset({"traceparent", "tracestate", "baggage"})  # W3C, in `_meta`
MAX_KNOWN_RESOURCES = 100_000  # remembered resource owners per project (then forgotten)


class Unavailable(RuntimeError):
    """The target has no running backend to answer for it."""


class Target(Protocol):
    name: str

    async def initialize(self, caller: Caller) -> dict[str, Any]: ...

    def handle(self, session: ClientSession, message: Message) -> AsyncGenerator[Message, None]: ...

    async def deliver(self, session: ClientSession, message: Message) -> None: ...

    def listen(self, session: ClientSession) -> AsyncGenerator[Message, None]: ...


class ServerTarget:
    def __init__(self, runtime: Runtime, name: str) -> None:
        self.runtime = runtime
        self.name = name

    async def initialize(self, caller: Caller) -> dict[str, Any]:
        backend = await self.runtime.describe(self.name, caller)
        if backend is None:
            raise Unavailable(f"server {self.name!r} has no running instance")
        result = {
            "capabilities": backend.get("capabilities", {}),
            "serverInfo": backend.get("serverInfo", {}),
            BACKEND_VERSION: backend.get("protocolVersion"),
        }
        if backend.get("instructions"):
            result["instructions"] = backend["instructions"]
        return result

    def handle(self, session: ClientSession, message: Message) -> AsyncGenerator[Message, None]:
        if ROUTE_KEY in message:  # sealed ids name the server: here, always this one
            message = routed_to(message)[1]
        return self.runtime.exchange(self.name, session.caller, message)

    async def deliver(self, session: ClientSession, message: Message) -> None:
        await self.runtime.deliver(self.name, session.caller, message)

    def listen(self, session: ClientSession) -> AsyncGenerator[Message, None]:
        return self.runtime.listen(self.name, session.caller)


ProjectLoader = Callable[[], Awaitable[tuple[list[str], list[Resource[PromptSpec]]]]]
LISTS = {  # what a project aggregates: method -> the result's field
    "tools/list": "tools",
    "prompts/list": "prompts",
    "resources/list": "resources",
    "resources/templates/list": "resourceTemplates",
}
CALLED_BY = {  # what a client gives back to use a listed item: listed once in a project
    "tools/list": "name",
    "prompts/list": "name",
    "resources/list": "uri",
    "resources/templates/list": "uriTemplate",
}


class ProjectTarget:
    def __init__(
        self,
        runtime: Runtime,
        name: str,
        load: ProjectLoader,
        limits: Limits | None = None,
        owners: dict[str, str] | None = None,
        exposure: Exposure | None = None,
    ) -> None:
        self.runtime = runtime
        self.name = name
        self.load = load
        self.limits = limits or Limits()
        self.owners = owners if owners is not None else {}  # resource URI -> member server
        self.exposure = exposure or Exposure()  # what this caller sees and may call
        self._trace: dict[str, Any] = {}  # of the request being served (one HTTP request)

    async def initialize(self, caller: Caller) -> dict[str, Any]:
        servers, _ = await self.load()
        described = await asyncio.gather(*(self.runtime.describe(s, caller) for s in servers))
        capabilities: dict[str, Any] = {"prompts": {"listChanged": True}}
        for backend in described:
            offered = (backend or {}).get("capabilities") or {}
            for key in ("tools", "resources", "logging", "completions"):
                if isinstance(offered.get(key), dict):
                    merged = capabilities.setdefault(key, {})
                    # a feature one member offers, the project offers (calls route to it)
                    for feature in ("listChanged", "subscribe"):
                        if offered[key].get(feature):
                            merged[feature] = True
        spoken = {backend.get("protocolVersion") for backend in described if backend}
        return {
            BACKEND_VERSION: spoken.pop() if len(spoken) == 1 else None,
            "capabilities": capabilities,
            "serverInfo": {"name": f"mcpctl-project-{self.name}", "version": __version__},
            "instructions": f"Tools of project {self.name}, named <server>__<tool>.",
        }

    async def _collect(self, server: str, session: ClientSession, message: Message) -> Message:
        stream = self.runtime.exchange(server, session.caller, message)
        return await final_response(stream, message.get("id"))

    async def _list_all(
        self, server: str, session: ClientSession, method: str, field: str
    ) -> list[Any]:
        """Every page of one server's list, within bounds: a server that repeats a cursor or
        pages past the limits contributes what it gave so far (DESIGN: bounded lists)."""
        items: list[Any] = []
        cursor = None
        seen: set[str] = set()
        for _ in range(self.limits.max_list_pages):
            params: dict[str, Any] = {"cursor": cursor} if cursor else {}
            if self._trace:  # the caller's trace context: the lists belong to its trace
                params["_meta"] = self._trace
            request = {
                "jsonrpc": "2.0",
                "id": f"{method}:{server}",
                "method": method,
                "params": params,
            }
            response = await self._collect(server, session, request)
            result = response.get("result")
            if not isinstance(result, dict):
                return items  # a server without this capability just contributes nothing
            page = result.get(field)
            if isinstance(page, list):
                items.extend(page[: self.limits.max_list_items - len(items)])
            cursor = result.get("nextCursor")
            if not isinstance(cursor, str) or not cursor or cursor in seen:
                return items
            if len(items) >= self.limits.max_list_items:
                break
            seen.add(cursor)
        log.warning("%s: %s of %s stopped after %d items", self.name, method, server, len(items))
        return items

    async def handle(
        self, session: ClientSession, message: Message
    ) -> AsyncGenerator[Message, None]:
        method = message.get("method", "")
        request_id = message.get("id")
        params = message.get("params") or {}
        ref = params.get("ref")
        ref = ref if isinstance(ref, dict) else {}  # what a completion is for
        meta = params.get("_meta")
        if isinstance(meta, dict):
            self._trace = {k: v for k, v in meta.items() if k in TRACE_CONTEXT}
        servers, prompts = await self.load()
        if ROUTE_KEY in message:  # mcpd's own, for the member server a sealed id names
            server, routed = routed_to(message)
            if server not in servers:
                yield jsonrpc.error(
                    request_id,
                    jsonrpc.INVALID_PARAMS,
                    f"server {server!r} left project {self.name}",
                )
                return
            async with self._member(server, session, routed) as items:
                async for item in items:
                    yield item
        elif method == "ping":
            yield jsonrpc.result(request_id, {})
        elif method in LISTS:
            yield await self._aggregate(session, request_id, method, servers, prompts)
        elif (
            method == "prompts/get"
            and _stored(prompts, params.get("name"))
            and self.exposure.prompt(None, str(params.get("name")))
        ):
            yield render_prompt(
                request_id, _stored(prompts, params.get("name")), params.get("arguments") or {}
            )
        elif method in ("resources/read", "resources/subscribe", "resources/unsubscribe") or (
            method == "completion/complete" and ref.get("type") == "ref/resource"
        ):
            # A completion's resource reference names a URI (or its template) as a read does,
            # not a `server__name`: it goes to the member serving it, if this caller may read it.
            given = ref.get("uri") if method == "completion/complete" else params.get("uri")
            uri = str(given)
            owner = await self._owner_of(uri, session, servers)
            if owner is None or not self.exposure.resource(owner, uri):
                unknown = jsonrpc.error(
                    request_id,
                    jsonrpc.INVALID_PARAMS,
                    f"unknown resource {given!r} in project {self.name}",
                )
                yield {**unknown, DENIED_KEY: True} if owner else unknown
                return
            async with self._member(owner, session, message) as items:
                async for item in items:
                    yield item
        elif method in ("tools/call", "prompts/get", "completion/complete"):
            key = "ref" if method == "completion/complete" else None
            name = str((ref.get("name") if key else params.get("name")) or "")
            source = self._source(method, name, servers)
            if source is None:  # hidden or missing: the same answer, so nothing is learnt
                refused = name.partition(SEPARATOR)[0] in servers  # a member's: the policy's
                unknown = jsonrpc.error(
                    request_id,
                    jsonrpc.INVALID_PARAMS,
                    f"unknown name {name!r} in project {self.name}",
                )
                yield {**unknown, DENIED_KEY: True} if refused else unknown
                return
            server, inner = source
            routed = {**params, key: {**ref, "name": inner}} if key else {**params, "name": inner}
            async with self._member(server, session, {**message, "params": routed}) as items:
                async for item in items:
                    yield item
        elif method == "logging/setLevel":
            await asyncio.gather(*(self._collect(s, session, message) for s in servers))
            yield jsonrpc.result(request_id, {})
        else:
            yield jsonrpc.error(
                request_id,
                jsonrpc.METHOD_NOT_FOUND,
                f"method {method!r} is not served by project endpoints",
            )

    def _member(
        self, server: str, session: ClientSession, message: Message
    ) -> contextlib.aclosing[AsyncGenerator[Message, None]]:
        """A member server's stream for one request, closed when this request's is (the
        gateway stops reading at the response), not later by the event loop's async-generator
        finalizer (a task and a wake-up per request)."""
        return contextlib.aclosing(self.runtime.exchange(server, session.caller, message))

    def _source(self, method: str, name: str, servers: list[str]) -> tuple[str, str] | None:
        """The member server and its own name for what a caller names, if it may."""
        if method == "tools/call":
            return self.exposure.tool_source(name, servers)
        server, _, inner = name.partition(SEPARATOR)
        if server not in servers or not inner or not self.exposure.prompt(server, inner):
            return None
        return server, inner

    async def _owner_of(self, uri: str, session: ClientSession, servers: list[str]) -> str | None:
        """The member server a resource URI (or a template) belongs to: known from an earlier
        list (of any client), else found now as a list shows it: the first server listing the
        URI, else the first with a template it matches, that this caller is shown; else the
        first that has it at all (the policy refuses it)."""
        owner = self.owners.get(uri) or session.resource_owners.get(uri)
        if owner in servers:
            return owner
        found = await asyncio.gather(
            *(self._list_all(s, session, "resources/list", "resources") for s in servers),
            *(
                self._list_all(s, session, "resources/templates/list", "resourceTemplates")
                for s in servers
            ),
        )
        resources, templates = found[: len(servers)], found[len(servers) :]
        first: dict[str, str] = {}  # URI -> the server whose resource a list shows
        for server, items in zip(servers, resources, strict=True):
            for item in items:
                if (shown := self._shown("resources/list", server, item)) is not None:
                    first.setdefault(shown["uri"], server)
        self._learn(first)
        if uri in first:
            return first[uri]
        templated = [
            (server, item)
            for server, items in zip(servers, templates, strict=True)
            for item in items
            if isinstance(item, dict) and matches(item.get("uriTemplate"), uri)
        ]
        for server, item in templated:
            if self._shown("resources/templates/list", server, item) is not None:
                return server
        hidden = [
            server
            for server, items in zip(servers, resources, strict=True)
            if any(isinstance(item, dict) and item.get("uri") == uri for item in items)
        ]
        return next(iter(hidden + [server for server, _ in templated]), None)

    def _learn(self, owners: dict[str, str]) -> None:
        if len(self.owners) > MAX_KNOWN_RESOURCES:
            self.owners.clear()
        self.owners.update(owners)

    async def _aggregate(
        self,
        session: ClientSession,
        request_id: Any,
        method: str,
        servers: list[str],
        prompts: list[Resource[PromptSpec]],
    ) -> Message:
        field, called_by = LISTS[method], CALLED_BY[method]
        per_server = await asyncio.gather(
            *(self._list_all(s, session, method, field) for s in servers)
        )
        combined: list[Any] = []
        listed: set[str] = set()
        dropped: list[str] = []  # later definitions of a name listed already
        for server, items in zip(servers, per_server, strict=True):
            for item in items:
                shown = self._shown(method, server, item)
                if shown is None:
                    continue
                if shown[called_by] in listed:
                    dropped.append(f"{shown[called_by][:200]!r} of {server}")
                    continue
                listed.add(shown[called_by])
                if method == "resources/list":
                    session.resource_owners[shown["uri"]] = server
                    self._learn({shown["uri"]: server})
                combined.append(shown)
        if dropped:
            log.warning(
                "%s: %s left out %d later definition(s) of a name listed already: %s",
                self.name,
                method,
                len(dropped),
                ", ".join(dropped[:5]),
            )
        if method == "prompts/list":  # names (DNS labels) no member's `server__name` can be
            combined.extend(
                {
                    "name": p.metadata.name,
                    "description": p.spec.description,
                    "arguments": [a.model_dump(exclude_defaults=False) for a in p.spec.arguments],
                }
                for p in prompts
                if self.exposure.prompt(None, p.metadata.name)
            )
        return jsonrpc.result(request_id, {field: combined})

    def _shown(self, method: str, server: str, item: object) -> dict[str, Any] | None:
        """A member's list item as this caller sees it in the project, or None if hidden or
        without a name (URI, template) a client could give back."""
        if not isinstance(item, dict):
            return None
        if method == "tools/list":
            return self.exposure.tool(server, item)
        name = item.get("name", "")
        if method == "prompts/list":
            if not isinstance(name, str) or not name:
                return None
            visible = self.exposure.prompt(server, name)
        else:  # resources and their templates, by URI
            uri = item.get(CALLED_BY[method])
            if not isinstance(uri, str):
                return None
            visible = self.exposure.resource(server, uri)
        return {**item, "name": f"{server}{SEPARATOR}{name}"} if visible else None

    async def deliver(self, session: ClientSession, message: Message) -> None:
        servers, _ = await self.load()
        await asyncio.gather(*(self.runtime.deliver(s, session.caller, message) for s in servers))

    async def listen(self, session: ClientSession) -> AsyncGenerator[Message, None]:
        servers, _ = await self.load()
        queue: asyncio.Queue[Message] = asyncio.Queue()

        async def pump(server: str) -> None:
            async for item in self.runtime.listen(server, session.caller):
                queue.put_nowait(item)

        tasks = [asyncio.ensure_future(pump(s)) for s in servers]
        try:
            while True:
                yield await queue.get()
        finally:
            for task in tasks:
                task.cancel()


async def final_response(stream: AsyncGenerator[Message, None], request_id: Any) -> Message:
    """The response a stream ends with (what else it carries is dropped), or an error."""
    final: Message = jsonrpc.error(request_id, jsonrpc.INTERNAL_ERROR, "no response")
    try:
        async for item in stream:
            if jsonrpc.is_response(item):
                final = item
    finally:
        await stream.aclose()
    return final


def route(message: Message, server: str) -> Message:
    return {**message, ROUTE_KEY: server}


def routed_to(message: Message) -> tuple[str, Message]:
    return str(message[ROUTE_KEY]), {k: v for k, v in message.items() if k != ROUTE_KEY}


def _stored(prompts: list[Resource[PromptSpec]], name: object) -> Resource[PromptSpec] | None:
    return next((p for p in prompts if p.metadata.name == name), None)


def render_prompt(
    request_id: Any, prompt: Resource[PromptSpec] | None, arguments: dict[str, Any]
) -> Message:
    assert prompt is not None
    missing = [a.name for a in prompt.spec.arguments if a.required and a.name not in arguments]
    if missing:
        return jsonrpc.error(
            request_id, jsonrpc.INVALID_PARAMS, f"missing required arguments: {', '.join(missing)}"
        )
    declared = {a.name for a in prompt.spec.arguments}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(arguments.get(name, "")) if name in declared else match.group(0)

    text = PLACEHOLDER.sub(substitute, prompt.spec.text)
    return jsonrpc.result(
        request_id,
        {
            "description": prompt.spec.description,
            "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
        },
    )
