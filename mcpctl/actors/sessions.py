"""Opening the MCP transport to an instance: STDIO through the orchestrator, or HTTP."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

from mcpctl.controllers.workload import Workload
from mcpctl.mcp.http_transports import legacy_sse, streamable_http
from mcpctl.mcp.transports import StdioTransport, Transport
from mcpctl.models.server import Transport as Kind
from mcpctl.orchestrators.base import Handle, Orchestrator, StartError


async def open_transport(
    orchestrator: Orchestrator, handle: Handle, workload: Workload, timeout: float = 120.0
) -> Transport:
    kind = workload.transport
    if kind is Kind.STDIO:
        return StdioTransport(await orchestrator.open_stdio(handle, workload))
    assert handle.address is not None
    if handle.pid is not None:
        await wait_for_listener(handle.address, timeout)
    if kind is Kind.SSE:
        return legacy_sse(handle.address)
    return streamable_http(handle.address)


async def wait_for_listener(address: str, timeout: float) -> None:
    """A freshly started HTTP server listens when it is ready; nothing announces it, so try."""
    parts = urlsplit(address)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if time.monotonic() > deadline:
                raise StartError(f"nothing listens on {host}:{port} after {timeout:g} s") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
            continue
        writer.close()
        return
