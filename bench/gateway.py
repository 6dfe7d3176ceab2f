"""tools/call through mcpd versus straight to the same server, in one run.

The server is `@modelcontextprotocol/server-everything` (npm). Paths: the SDK client over
STDIO to the server, over the server's own Streamable HTTP, and through mcpd's gateway
(which reaches the server over STDIO through a Ray host actor).

    python -m bench.gateway [--calls 2000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx2
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from bench.common import TOKEN, Mcpd, free_port, sdk_calls, start, stop, table, wait_listening

PACKAGE = "@modelcontextprotocol/server-everything"


async def run(calls: int, concurrency: int) -> list[tuple[str, float, list[float]]]:
    results = []
    stdio = StdioServerParameters(command="npx", args=["-y", PACKAGE, "stdio"])
    results.append(
        ("direct, STDIO", *await sdk_calls(lambda: stdio_client(stdio), calls, concurrency))
    )

    port = free_port()
    server = start(["npx", "-y", PACKAGE, "streamableHttp"], PORT=str(port))
    try:
        wait_listening(port, server)
        url = f"http://127.0.0.1:{port}/mcp"
        results.append(
            (
                "direct, Streamable HTTP",
                *await sdk_calls(lambda: streamable_http_client(url), calls, concurrency),
            )
        )
    finally:
        stop(server)

    mcpd = Mcpd()
    try:
        mcpd.create_server("everything", {"package": PACKAGE, "runtime": "node", "args": ["stdio"]})
        gateway = f"{mcpd.url}/mcp/servers/everything"

        def through_mcpd() -> AbstractAsyncContextManager[Any]:
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
            return streamable_http_client(gateway, http_client=http)

        results.append(
            ("through mcpd (Ray hop, STDIO)", *await sdk_calls(through_mcpd, calls, concurrency))
        )
    finally:
        mcpd.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    results = asyncio.run(run(args.calls, args.concurrency))
    baseline = results[0][1]
    rows = []
    for name, rate, latencies in results:
        cuts = statistics.quantiles(latencies, n=100)
        rows.append(
            [
                name,
                f"{rate:.0f}",
                f"{cuts[49] * 1000:.1f}",
                f"{cuts[98] * 1000:.1f}",
                f"{rate / baseline:.2f}",
            ]
        )
    print(f"tools/call echo, {args.calls} calls, {args.concurrency} concurrent, one session")
    print(table(["path", "req/s", "p50 ms", "p99 ms", "vs STDIO"], rows))


if __name__ == "__main__":
    main()
