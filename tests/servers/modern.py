"""An MCP server that speaks only 2026-07-28, built with the official SDK's 2026 server API.

Started the way users start servers: `command: python`, `args: [this file, STATE_DIR]` for
STDIO, or `args: [this file, STATE_DIR, --http]` for Streamable HTTP on `$PORT` at `/mcp`.
It refuses `initialize` as a 2026-only server does (`UnsupportedProtocolVersion` -32022,
naming `2026-07-28`; over HTTP also a request without a 2026 `MCP-Protocol-Version` header,
and 405 for GET and DELETE), answers `server/discover`, and serves every request from its
per-request `_meta` envelope. Each request it serves is appended to STATE_DIR/requests.jsonl
as {"method", "meta", "headers", "keys" (of its params)}, so a test can check what reached it.

Tools:
  echo {text}           answers "echo: <text>"
  envelope {}           answers the request's `_meta` as JSON text
  slow {steps}          sends `steps` progress notifications (0.05 s apart), answers "done <steps>"
  hang {}               appends to STATE_DIR/hanging and never answers; its cancellation is
                        appended to STATE_DIR/cancelled
  region {region, text}  `region` is mirrored in the `Mcp-Param-Region` header
                        (`x-mcp-header`); answers "<region>: <text>"
  pid {}                the process id
  ask {}                multi round-trip (input_required): asks an elicitation (`name`), then a
                        sampling (`capital`, with the name), then answers
                        "<name> learnt: <the sampled text>"; each try is appended to
                        STATE_DIR/ask-tries, each completed call to STATE_DIR/ask-completed
  think {rounds}        answers input_required with only a requestState `rounds` times, then
                        "thought <rounds> times"; completed calls go to STATE_DIR/think-completed
  grow {name}           adds a tool `name` (answering "grown") and announces tools/list_changed
  touch {uri}           announces notifications/resources/updated for `uri`
Prompt: greet {name}. Resource: modern://readme (text). Subscriptions (subscriptions/listen)
are the SDK's; each listen opened is in requests.jsonl, each one that ended (cancelled or the
stream closed) is appended to STATE_DIR/listens-ended.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import (
    CreateMessageRequest,
    CreateMessageRequestParams,
    ElicitRequest,
    ElicitRequestFormParams,
    InputRequiredResult,
    SamplingMessage,
    TextContent,
)
from pydantic import Field

STATE = Path(sys.argv[1]) if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else None
MODERN = "2026-07-28"
INSTRUCTIONS = "A 2026-07-28-only test server."


async def record(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Middleware: what every request carried, before anything else looks at it."""
    if STATE is not None:
        params = ctx.params or {}
        request = getattr(ctx.request, "headers", None)
        headers = {k: v for k, v in (request or {}).items() if k.lower().startswith("mcp-")}
        line = {
            "method": ctx.method,
            "meta": params.get("_meta"),
            "headers": headers,
            "keys": sorted(params),
        }
        with (STATE / "requests.jsonl").open("a") as file:
            file.write(json.dumps(line) + "\n")
    if ctx.method != "subscriptions/listen":
        return await call_next(ctx)
    try:
        return await call_next(ctx)
    finally:
        note("listens-ended")


server = MCPServer("modern-test", version="1.0.0", instructions=INSTRUCTIONS, middleware=[record])


@server.tool()
def echo(text: str) -> str:
    """Answer the text."""
    return f"echo: {text}"


@server.tool()
def envelope(ctx: Context) -> str:
    """The request's `_meta`, as JSON."""
    return json.dumps((ctx.request_context.params or {}).get("_meta"), sort_keys=True)


@server.tool()
async def slow(steps: int, ctx: Context) -> str:
    """Report progress `steps` times, then answer."""
    for step in range(1, steps + 1):
        await anyio.sleep(0.05)
        await ctx.report_progress(step, steps, f"step {step}")
    return f"done {steps}"


@server.tool()
async def hang() -> str:
    """Never answer; say when cancelled."""
    note("hanging")
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        note("cancelled")
        raise
    return "never"


def note(name: str) -> None:
    if STATE is not None:
        with (STATE / name).open("a") as file:
            file.write(f"{os.getpid()}\n")


@server.tool()
def region(
    region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})], text: str
) -> str:
    """Answer where the text was said; over HTTP the region travels in a header too."""
    return f"{region}: {text}"


@server.tool()
def pid() -> str:
    """The process id."""
    return str(os.getpid())


@server.tool()
async def ask(ctx: Context) -> str | InputRequiredResult:
    """Ask the user's name (elicitation), then the model (sampling), over input_required."""
    note("ask-tries")
    answers = ctx.input_responses or {}
    if ctx.request_state is None or (ctx.request_state == "asked-name" and "name" not in answers):
        schema = {"type": "object", "properties": {"name": {"type": "string"}}}
        elicit = ElicitRequest(
            params=ElicitRequestFormParams(message="Your name?", requested_schema=schema)
        )
        return InputRequiredResult(input_requests={"name": elicit}, request_state="asked-name")
    if ctx.request_state == "asked-name":
        name = (getattr(answers["name"], "content", None) or {}).get("name", "?")
        prompt = SamplingMessage(role="user", content=TextContent(type="text", text=f"{name}?"))
        sample = CreateMessageRequest(
            params=CreateMessageRequestParams(messages=[prompt], max_tokens=20)
        )
        state = json.dumps({"name": name})
        return InputRequiredResult(input_requests={"capital": sample}, request_state=state)
    name = json.loads(ctx.request_state)["name"]
    sampled = answers.get("capital")
    content = getattr(sampled, "content", None)
    note("ask-completed")
    return f"{name} learnt: {getattr(content, 'text', '?')}"


@server.tool()
def think(rounds: int, ctx: Context) -> str | InputRequiredResult:
    """Answer input_required with only a requestState `rounds` times, then complete."""
    done = int(ctx.request_state or 0)
    if done < rounds:
        return InputRequiredResult(request_state=str(done + 1))
    note("think-completed")
    return f"thought {rounds} times"


@server.tool()
async def grow(name: str, ctx: Context) -> str:
    """Add a tool and say the tool list changed."""

    def grown() -> str:
        return "grown"

    server.add_tool(grown, name=name, description="Added by grow.")
    await ctx.notify_tools_changed()
    return f"added {name}"


@server.tool()
async def touch(uri: str, ctx: Context) -> str:
    """Say a resource changed."""
    await ctx.notify_resource_updated(uri)
    return f"touched {uri}"


@server.prompt()
def greet(name: str) -> str:
    """Greet someone."""
    return f"Hello, {name}, from a 2026-07-28 server."


@server.resource("modern://readme", mime_type="text/plain")
def readme() -> str:
    """What this server is."""
    return "This server speaks only MCP 2026-07-28."


async def serve_stdio() -> None:
    """The SDK's 2026-07-28 stream loop, which refuses `initialize` (its dual-era loop,
    `Server.run`, would accept it)."""
    from mcp.server.runner import _serve_modern_stream
    from mcp.server.stdio import stdio_server

    lowlevel = server._lowlevel_server
    async with stdio_server() as (read, write), lowlevel.lifespan(lowlevel) as state:
        await _serve_modern_stream(
            lowlevel, read, write, lifespan_state=state, raise_exceptions=False
        )


def http_app() -> Any:
    """The SDK's Streamable HTTP app, behind a gate that lets only 2026-07-28 traffic in."""
    from starlette.responses import JSONResponse, Response

    app = server.streamable_http_app(host="127.0.0.1")

    async def gate(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if scope["method"] != "POST":
            await Response(status_code=405, headers={"Allow": "POST"})(scope, receive, send)
            return
        version = headers.get("mcp-protocol-version")
        if version != MODERN:
            body = {
                "jsonrpc": "2.0",
                "id": None,
                "error": {
                    "code": -32022,
                    "message": f"this server speaks only {MODERN}",
                    "data": {"supported": [MODERN], "requested": version},
                },
            }
            await JSONResponse(body, status_code=400)(scope, receive, send)
            return
        await app(scope, receive, send)

    return gate


def main() -> None:
    if "--http" in sys.argv:
        import uvicorn

        port = int(os.environ.get("PORT", "8000"))
        uvicorn.run(http_app(), host="127.0.0.1", port=port, log_level="warning")
    else:
        anyio.run(serve_stdio)


if __name__ == "__main__":
    main()
