"""tools/call through mcpd versus straight to the same server, in one run.

The server is `@modelcontextprotocol/server-everything` (npm). Paths: the SDK client over
STDIO to the server, over the server's own Streamable HTTP, and through mcpd's gateway
(which reaches the server over STDIO through a Ray host actor).

    python -m bench.gateway [--calls 2000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx2
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from bench.common import TOKEN, Mcpd, free_port, table

PACKAGE = "@modelcontextprotocol/server-everything"


async def measure(
    connect: Callable[[], AbstractAsyncContextManager[Any]], calls: int, concurrency: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    async with Client(connect(), mode="legacy") as client:
        await client.call_tool("echo", {"message": "warm-up"})
        queue = iter(range(calls))

        async def worker() -> None:
            for i in queue:
                started = time.perf_counter()
                result = await client.call_tool("echo", {"message": f"m{i}"})
                latencies.append(time.perf_counter() - started)
                assert result.content[0].text == f"Echo: m{i}"

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return calls / elapsed, latencies


def wait_listening(port: int) -> None:
    import socket

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


async def run(calls: int, concurrency: int) -> list[tuple[str, float, list[float]]]:
    results = []
    stdio = StdioServerParameters(command="npx", args=["-y", PACKAGE, "stdio"])
    from mcp.client.stdio import stdio_client

    results.append(
        ("direct, STDIO", *await measure(lambda: stdio_client(stdio), calls, concurrency))
    )

    port = free_port()
    server = subprocess.Popen(
        ["npx", "-y", PACKAGE, "streamableHttp"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port)
        url = f"http://127.0.0.1:{port}/mcp"
        results.append(
            (
                "direct, Streamable HTTP",
                *await measure(lambda: streamable_http_client(url), calls, concurrency),
            )
        )
    finally:
        server.terminate()
        server.wait()

    mcpd = Mcpd()
    try:
        spec = {"package": PACKAGE, "runtime": "node", "args": ["stdio"]}
        mcpd.http.post(
            "/api/v1/servers", json={"metadata": {"name": "everything"}, "spec": spec}
        ).raise_for_status()
        while not any(
            i["status"] == "RUNNING" for i in mcpd.http.get("/api/v1/instances").json()["items"]
        ):
            time.sleep(0.2)
        gateway = f"{mcpd.url}/mcp/servers/everything"

        def through_mcpd() -> AbstractAsyncContextManager[Any]:
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
            return streamable_http_client(gateway, http_client=http)

        results.append(
            ("through mcpd (Ray hop, STDIO)", *await measure(through_mcpd, calls, concurrency))
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
