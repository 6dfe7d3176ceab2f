"""What tracing costs mcpd per MCP call, in-process: the gateway's, host's and backend call's
hooks around a backend that answers at once, tracing off (the hooks test one flag) and on (the
three spans, W3C context put in `_meta` at each hop, batched by the SDK's BatchSpanProcessor
and exported over OTLP/HTTP by its thread to the collector at --endpoint, e.g. the Jaeger of
scripts/jaeger.sh). CPU of the whole process (the exporter's thread included) per call.

    .venv/bin/python -m bench.tracing --endpoint http://127.0.0.1:14318 [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import AsyncGenerator

from mcpctl.mcp.jsonrpc import Message
from mcpctl.observability import tracing


async def backend(message: Message) -> AsyncGenerator[Message, None]:
    yield {"jsonrpc": "2.0", "id": message["id"], "result": {"content": []}}


def backend_call(message: Message) -> AsyncGenerator[Message, None]:
    if tracing.enabled:
        return tracing.backend_call("s", 0, message, backend)
    return backend(message)


def host(message: Message) -> AsyncGenerator[Message, None]:
    if tracing.enabled:
        return tracing.host_exchange("s", 0, "a@example.com", "servers/s", message, backend_call)
    return backend_call(message)


def gateway(message: Message) -> AsyncGenerator[Message, None]:
    if tracing.enabled:
        attributes = {"mcpctl.endpoint": "servers/s", "enduser.id": "a@example.com"}
        return tracing.gateway_request(message, "tools/call", {}, attributes, host)
    return host(message)


async def per_call(calls: int) -> float:
    message: Message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "x"}},
    }
    for _ in range(200):  # warm up
        [item async for item in gateway(message)]
    started = time.process_time()
    for _ in range(calls):
        [item async for item in gateway(message)]
    return (time.process_time() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--endpoint", default=os.environ.get("MCPCTL_TEST_OTLP_ENDPOINT"))
    args = parser.parse_args()
    off = asyncio.run(per_call(args.calls))
    if not args.endpoint:
        parser.error("--endpoint: an OTLP/HTTP collector (scripts/jaeger.sh start)")
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = args.endpoint
    os.environ["OTEL_SERVICE_NAME"] = "mcpd-bench"
    os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(args.calls * 3 + 1000)  # keep every span
    assert tracing.configure("bench")
    on = asyncio.run(per_call(args.calls))
    print("| tracing | CPU per call (3 hops, in-process) |")
    print("| --- | --- |")
    print(f"| off | {off * 1e6:.1f} µs |")
    print(f"| on  | {on * 1e6:.1f} µs (+{(on - off) * 1e6:.1f} µs: 3 spans) |")
    tracing.shutdown()


if __name__ == "__main__":
    main()
