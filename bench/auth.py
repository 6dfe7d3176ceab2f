"""What an OpenID provider's JWT costs per MCP call, against an API token.

One mcpd with MCPD_OIDC_ISSUER (the test provider of scripts/idp.sh, started if needed), the
stdlib STDIO echo server (bench/tiny_server.py) in a project whose member is a group. The same
number of tools/call through the project endpoint with the official SDK client, once with the
admin's API token and once with a member's JWT (minted by the provider for mcpd), alternated
`--rounds` times; mcpd's CPU (its whole process tree) per call and the latency percentiles.
Then the cost of a cache miss alone, in process: PyJWT verifying the provider's RS256 token.

    .venv/bin/python -m bench.auth [--calls 1000] [--rounds 3] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx2
from mcp.client.streamable_http import streamable_http_client

from bench.common import TOKEN, Mcpd, cpu_seconds, percentiles, sdk_calls, table
from bench.idp import mint, set_user, start_idp
from mcpctl.gateway.oidc import OidcConfig, OidcVerifier

TINY = Path(__file__).parent / "tiny_server.py"


def connect(url: str, token: str) -> AbstractAsyncContextManager[Any]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    return streamable_http_client(url, http_client=http)


async def measure(mcpd: Mcpd, url: str, token: str, calls: int, concurrency: int) -> list[float]:
    before = cpu_seconds(mcpd.processes())
    _, latencies = await sdk_calls(
        lambda: connect(url, token), calls, concurrency, tool="tiny__echo", warmup=5
    )
    cpu = cpu_seconds(mcpd.processes()) - before
    p50, p99 = percentiles(latencies)
    return [cpu / calls * 1e3, p50, p99]


def verify_cost(issuer: str, token: str, n: int = 2000) -> float:
    """Microseconds per verification of one token (keys fetched once, before the clock)."""
    verifier = OidcVerifier(OidcConfig(issuer=issuer))

    async def run() -> float:
        await verifier.verify(token)
        began = time.perf_counter()
        for _ in range(n):
            await verifier.verify(token)
        return (time.perf_counter() - began) / n * 1e6

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    idp = start_idp()
    mcpd = Mcpd(MCPD_OIDC_ISSUER=idp.issuer, MCPD_ACTOR_HOSTS="1")
    try:
        mcpd.create_server("tiny", {"command": sys.executable, "args": [str(TINY)]})
        project = {"servers": ["tiny"], "members": ["group:bench"]}
        mcpd.http.post(
            "/api/v1/projects", json={"metadata": {"name": "bench"}, "spec": project}
        ).raise_for_status()
        set_user(idp, "bench@example.com", ["bench"])
        jwt = mint(idp, "bench@example.com", mcpd.url)
        url = f"{mcpd.url}/mcp/projects/bench"
        results: dict[str, list[list[float]]] = {"API token": [], "JWT (OIDC)": []}
        for _ in range(args.rounds):
            for name, token in (("API token", TOKEN), ("JWT (OIDC)", jwt)):
                results[name].append(
                    asyncio.run(measure(mcpd, url, token, args.calls, args.concurrency))
                )
        rows = []
        for name, runs in results.items():
            cpu, p50, p99 = (statistics.median(run[i] for run in runs) for i in range(3))
            rows.append([name, f"{cpu:.3f}", f"{p50:.2f}", f"{p99:.2f}"])
        print(
            f"{args.calls} tools/call x {args.rounds} rounds, {args.concurrency} at a time, "
            "medians of the rounds:"
        )
        print(table(["token", "mcpd CPU ms/call", "p50 ms", "p99 ms"], rows))
        print(f"cache miss: PyJWT RS256 verification {verify_cost(idp.issuer, jwt):.0f} µs/token")
    finally:
        mcpd.stop()


if __name__ == "__main__":
    main()
