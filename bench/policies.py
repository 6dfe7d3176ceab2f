"""What the audit trail and rate limits cost per MCP call.

One mcpd per configuration, one after the other (never two at once): none of the two, the audit
trail (the default), a per-principal rate limit that never refuses (so every call takes the
limiter's path: local tokens, leased from the store in chunks), and both. Each runs the
stdlib STDIO echo server (bench/tiny_server.py) in a project; the official SDK client makes
`--calls` tools/call through the project endpoint, `--concurrency` at a time, `--rounds` times;
mcpd's CPU (its whole process tree, the audit's background writes included) per call, and the
latency percentiles; medians of the rounds.

    .venv/bin/python -m bench.policies [--calls 2000] [--rounds 3] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.auth import measure
from bench.common import TOKEN, Mcpd, table
from mcpctl.gateway.audit import AuditConfig, AuditLog
from mcpctl.gateway.rate_limit import RateLimitConfig, RateLimiter
from mcpctl.observability.metrics import Metrics
from mcpctl.store.database import Database, migrate

TINY = Path(__file__).parent / "tiny_server.py"
NEVER = str(10**7)  # calls per minute: a limit that never refuses
CONFIGS = {
    "no audit, no rate limit": {"MCPD_AUDIT_ENABLED": "false"},
    "audit (default)": {},
    "rate limit": {"MCPD_AUDIT_ENABLED": "false", "MCPD_RATE_LIMIT_PER_MINUTE": NEVER},
    "audit + rate limit": {"MCPD_RATE_LIMIT_PER_MINUTE": NEVER},
}


def run(env: dict[str, str], calls: int, rounds: int, concurrency: int) -> list[float]:
    mcpd = Mcpd(MCPD_ACTOR_HOSTS="1", **env)
    try:
        mcpd.create_server("tiny", {"command": sys.executable, "args": [str(TINY)]})
        project = {"metadata": {"name": "bench"}, "spec": {"servers": ["tiny"]}}
        mcpd.http.post("/api/v1/projects", json=project).raise_for_status()
        url = f"{mcpd.url}/mcp/projects/bench"
        runs = [asyncio.run(measure(mcpd, url, TOKEN, calls, concurrency)) for _ in range(rounds)]
        return [statistics.median(run[i] for run in runs) for i in range(3)]
    finally:
        mcpd.stop()


class _Request:
    """What the audit reads of a request (no HTTP needed for the in-process loop)."""

    def __init__(self) -> None:
        self.scope: dict[str, Any] = {"path": "/mcp/projects/bench", "headers": []}
        self.headers: dict[str, str] = {}
        context = type("Context", (), {"resource_owners": {}})()
        self.app = type("App", (), {"state": type("State", (), {"context": context})()})()


def in_process(n: int) -> list[list[str]]:
    """CPU µs per call of each policy's own work, on a fresh SQLite store: recording one call
    (the request's part), writing it (the background task's part, per row, 1000 per
    transaction), and admitting one call under a rate limit that never refuses (local tokens,
    a lease from the store per chunk of 100)."""
    database = Database(f"sqlite:///{tempfile.mkdtemp()}/bench.db")
    migrate(database.engine)
    log = AuditLog(database, Metrics(), AuditConfig(queue_size=n + 1, batch_size=1000))
    request: Any = _Request()
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
    message["params"] = {"name": "tiny__echo", "arguments": {"message": "hello"}}
    answer = {"jsonrpc": "2.0", "id": 1, "result": {"content": [], "isError": False}}
    gc.collect()  # not a full collection of what migrate() left in the measured loop
    began = time.process_time()
    for _ in range(n):
        log.observed(request, "bench@example.com", message, answer, time.perf_counter())
    record = (time.process_time() - began) / n * 1e6
    gc.collect()
    began = time.process_time()
    asyncio.run(log.close())
    write = (time.process_time() - began) / n * 1e6
    limiter = RateLimiter(database, Metrics(), RateLimitConfig())

    async def admit() -> float:
        await limiter.admit("u:bench", 10**7, 0)
        began = time.process_time()
        for _ in range(n):
            assert await limiter.admit("u:bench", 10**7, 0) is None
        return (time.process_time() - began) / n * 1e6

    admitted = asyncio.run(admit())
    database.dispose()
    return [
        ["audit: record a call (in the request)", f"{record:.1f}"],
        ["audit: write it (background, per row)", f"{write:.1f}"],
        ["rate limit: admit a call (leases amortized)", f"{admitted:.1f}"],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--only", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--in-process", action="store_true", help="only the in-process costs")
    args = parser.parse_args()
    print(table(["in process, 20,000 calls", "CPU µs/call"], in_process(20_000)), flush=True)
    if args.in_process:
        return
    rows = []
    for name in args.only:
        cpu, p50, p99 = run(CONFIGS[name], args.calls, args.rounds, args.concurrency)
        rows.append([name, f"{cpu:.3f}", f"{p50:.2f}", f"{p99:.2f}"])
        print(rows[-1], flush=True)
    print(
        f"{args.calls} tools/call x {args.rounds} rounds, {args.concurrency} at a time, "
        "medians of the rounds:"
    )
    print(table(["configuration", "mcpd CPU ms/call", "p50 ms", "p99 ms"], rows))


if __name__ == "__main__":
    main()
