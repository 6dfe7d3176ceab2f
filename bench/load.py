"""mcpd against the other MCP bridges, in one run: the same STDIO server behind each, the same load.

The server is `@modelcontextprotocol/server-everything` (npm, run by npx), tool `echo`. Bridges,
each started in turn (never two at once), each measured alone:

- the server's own Streamable HTTP transport (`server-everything streamableHttp`): the floor,
- mcp-proxy (PyPI, in its own venv: it needs mcp<2),
- supergateway 4 (npm) `--stateful --outputTransport streamableHttp`,
- mcpd, through its server endpoint /mcp/servers/everything and a project endpoint
  /mcp/projects/bench (tool `everything__echo`).

Load: wrk with bench/mcp.lua; each wrk thread holds one MCP session, its connections loop
tools/call. Latency percentiles are wrk's own. Bridge CPU: utime + stime from /proc of every
process of the bridge (bench.common.process_tree: the bridge's descendants plus its session —
for mcpd that is mcpd, its Ray processes and host actors), minus the server's processes (the
ones running server-everything and theirs), before and after the measured run, per call.
Then one call at a time with the official SDK client: direct STDIO, every bridge, and the SDK's
own Streamable HTTP server with a trivial echo tool (bench/tiny_server.py http: the SDK floor).

    scripts/bench-peers.sh   # once: wrk, mcp-proxy, supergateway (cached; load.py runs it too)
    .venv/bin/python -m bench.load [--duration 20] [--warmup 3] [--threads 4] [--connections 32]
                                   [--calls 500] [--only mcp-proxy mcpd ...]
                                   [--audit on|off|both] [--repeat 1]

`--audit both` runs mcpd with its audit trail on and off (MCPD_AUDIT_ENABLED=false), `--repeat`
times each, interleaved (on, off, off, on, ...), a row per run and endpoint, and prints what the
audit costs: CPU per call with it on minus off, per endpoint (means of the runs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx2
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from bench.common import (
    TOKEN,
    Mcpd,
    Wrk,
    cmdline,
    cpu_by_process,
    descendants,
    free_port,
    percentiles,
    process_tree,
    sdk_calls,
    start,
    stop,
    table,
    wait_listening,
    wrk_errors,
)

PACKAGE = "@modelcontextprotocol/server-everything"
SERVER = ["npx", "-y", PACKAGE]
SERVER_MARK = "server-everything"  # in the command line of npx, sh and node running the server
HERE = Path(__file__).parent
PEERS = HERE.parent / "scripts" / "bench-peers.sh"
BRIDGES = ["stdio", "http", "mcp-proxy", "supergateway", "mcpd", "floor"]

MCPD_SERVER = "mcpd, server endpoint"
MCPD_PROJECT = "mcpd, project endpoint"
MCP_PROXY = "mcp-proxy"
SUPERGATEWAY = "supergateway"
OWN_HTTP = "server's own HTTP (floor)"
FLOOR = "SDK HTTP floor (tiny_server.py)"


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass
class Bridge:
    name: str
    url: str
    root: int  # the process started for the bridge; its tree has the server in it
    tool: str = "echo"
    token: str = ""
    bridged: bool = True  # False: the server itself answers HTTP, there is no bridge

    def processes(self) -> list[int]:
        return process_tree(self.root)

    def connect(self) -> AbstractAsyncContextManager[Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        http = httpx2.AsyncClient(headers=headers, timeout=60)
        return streamable_http_client(self.url, http_client=http)


@dataclass
class Load:
    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    bridge_cpu: float  # seconds
    server_cpu: float
    load_average: float  # of the machine over the minute before the run: it is shared

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def per_call_ms(self, cpu: float) -> float:
        return cpu * 1000 / max(self.calls, 1)


Bridges = AbstractContextManager[list[Bridge]]


class Run:
    """The processes of one benchmark run: each bridge's output goes to a log of its own (kept
    when something fails), each process is stopped with its whole tree when its bridge is done."""

    def __init__(self, args: argparse.Namespace, peers: dict[str, str]) -> None:
        self.args = args
        self.peers = peers
        self.logs = Path(tempfile.mkdtemp(prefix="mcpctl-bench-load-"))

    @contextmanager
    def process(self, name: str, command: list[str], **env: str) -> Iterator[subprocess.Popen]:
        with (self.logs / f"{name}.log").open("wb") as log:
            process = start(command, log=log, **env)
            try:
                yield process
            finally:
                stop(process)

    @contextmanager
    def http_bridge(
        self, key: str, name: str, command: list[str], port: int, bridged: bool = True, **env: str
    ) -> Iterator[list[Bridge]]:
        with self.process(key, command, **env) as process:
            wait_listening(port, process)
            url = f"http://127.0.0.1:{port}/mcp"
            yield [Bridge(name, url, process.pid, bridged=bridged)]

    def own_http(self) -> Bridges:
        port = free_port()
        command = [*SERVER, "streamableHttp"]
        return self.http_bridge("http", OWN_HTTP, command, port, bridged=False, PORT=str(port))

    def mcp_proxy(self) -> Bridges:
        port = free_port()
        command = [self.peers["mcp_proxy"], "--host", "127.0.0.1", "--port", str(port)]
        command += ["--log-level", "WARNING", "--", *SERVER, "stdio"]
        return self.http_bridge("mcp-proxy", MCP_PROXY, command, port)

    def supergateway(self) -> Bridges:
        port = free_port()
        command = [self.peers["supergateway"], "--stdio", " ".join([*SERVER, "stdio"])]
        command += ["--outputTransport", "streamableHttp", "--stateful", "--port", str(port)]
        command += ["--logLevel", "none"]
        return self.http_bridge("supergateway", SUPERGATEWAY, command, port)

    def floor(self) -> Bridges:
        port = free_port()
        command = [sys.executable, str(HERE / "tiny_server.py"), "http", str(port)]
        return self.http_bridge("floor", FLOOR, command, port, bridged=False)

    @contextmanager
    def mcpd(self, audit: bool | None = None, label: str = "") -> Iterator[list[Bridge]]:
        """mcpd with its audit trail on or off (None: as MCPD_AUDIT_ENABLED says, on if unset)."""
        mcpd = Mcpd() if audit is None else Mcpd(MCPD_AUDIT_ENABLED=str(audit).lower())
        try:
            mcpd.create_server(
                "everything", {"package": PACKAGE, "runtime": "node", "args": ["stdio"]}
            )
            project = {"metadata": {"name": "bench"}, "spec": {"servers": ["everything"]}}
            mcpd.http.post("/api/v1/projects", json=project).raise_for_status()
            yield [
                Bridge(
                    MCPD_SERVER + label,
                    f"{mcpd.url}/mcp/servers/everything",
                    mcpd.process.pid,
                    token=TOKEN,
                ),
                Bridge(
                    MCPD_PROJECT + label,
                    f"{mcpd.url}/mcp/projects/bench",
                    mcpd.process.pid,
                    tool="everything__echo",
                    token=TOKEN,
                ),
            ]
        except BaseException:
            say(f"mcpd's log: {mcpd.data_dir / 'mcpd.log'}")
            raise
        finally:
            mcpd.stop()

    def wrk(self, bridge: Bridge, seconds: int) -> dict[str, int]:
        a = self.args
        wrk = Wrk(
            self.peers["wrk"], bridge.url, bridge.tool, bridge.token, a.threads, a.connections
        )
        return wrk.run(seconds, verbose=a.verbose)

    def load(self, bridge: Bridge) -> Load:
        if self.args.warmup > 0:
            self.wrk(bridge, self.args.warmup)
        load_average = os.getloadavg()[0]
        before = split_cpu(bridge.root, bridge.processes())
        result = self.wrk(bridge, self.args.duration)
        after = split_cpu(bridge.root, bridge.processes())
        bridge_cpu, server_cpu = (
            sum(v - before[i].get(k, 0.0) for k, v in after[i].items()) for i in (0, 1)
        )
        if self.args.verbose:
            for side, label in ((0, "bridge"), (1, "server")):
                for key, value in sorted(after[side].items()):
                    used = value - before[side].get(key, 0.0)
                    say(f"  {label} {key[0]}: {used:6.2f} s CPU  {cmdline(key[0])[:90]}")
        return Load(
            calls=result["calls"],
            seconds=result["duration_us"] / 1e6,
            p50_ms=result["p50_us"] / 1000,
            p99_ms=result["p99_us"] / 1000,
            errors=wrk_errors(result),
            bridge_cpu=bridge_cpu if bridge.bridged else 0.0,
            server_cpu=server_cpu + (0.0 if bridge.bridged else bridge_cpu),
            load_average=load_average,
        )

    def sdk(
        self, name: str, connect: Callable[[], AbstractAsyncContextManager[Any]], tool: str
    ) -> tuple[float, float]:
        say(f"{name}: {self.args.calls} calls one at a time with the SDK client")
        _, latencies = asyncio.run(sdk_calls(connect, self.args.calls, 1, tool, warmup=20))
        return percentiles(latencies)


def split_cpu(root: int, pids: list[int]) -> tuple[dict[Any, float], dict[Any, float]]:
    """CPU seconds per process of a bridge's tree: (the bridge's, the server's). The server's
    processes are those below the bridge's root whose command line names the server (npx, sh,
    node), and their descendants; the root names it too when it is given the server's command."""
    server: set[int] = set()
    for pid in pids:
        if pid != root and SERVER_MARK in cmdline(pid):
            server.update(descendants(pid))
    cpu = cpu_by_process(pids)
    return (
        {k: v for k, v in cpu.items() if k[0] not in server},
        {k: v for k, v in cpu.items() if k[0] in server},
    )


def peers() -> dict[str, str]:
    """Installs or finds wrk, mcp-proxy and supergateway (scripts/bench-peers.sh, cached)."""
    done = subprocess.run([str(PEERS)], capture_output=True, text=True, check=False)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{PEERS} failed ({done.returncode})")
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def revision() -> str:
    """The commit mcpd ran from, and whether mcpctl/ had changes not committed yet."""
    repo = HERE.parent
    git = ["git", "-C", str(repo)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "mcpctl"], capture_output=True)
    return head.stdout.strip() + (" + uncommitted changes in mcpctl/" if dirty.stdout else "")


def ratio(value: float, goal: float, higher_is_better: bool = False) -> str:
    met = value >= goal if higher_is_better else value <= goal
    return f"{value:.2f} ({'met' if met else 'not met'})"


def report(
    args: argparse.Namespace, loads: dict[str, Load], sdk: dict[str, tuple[float, float]]
) -> None:
    print(
        f"\nwrk: {args.threads} threads (= {args.threads} MCP sessions), {args.connections} "
        f"connections, {args.duration} s per bridge after a {args.warmup} s warm-up; "
        f"tools/call echo on {PACKAGE} (STDIO behind every bridge); {os.cpu_count()} cores; "
        f"mcpd from {revision()}"
    )
    rows = [
        [
            name,
            f"{load.rate:,.0f}",
            f"{load.p50_ms:.1f}",
            f"{load.p99_ms:.1f}",
            str(load.errors),
            f"{load.per_call_ms(load.bridge_cpu):.2f}" if load.bridge_cpu else "-",
            f"{load.per_call_ms(load.server_cpu):.2f}",
            f"{load.load_average:.1f}",
        ]
        for name, load in loads.items()
    ]
    if rows:
        headers = ["bridge", "calls/s", "p50 ms", "p99 ms", "errors", "bridge CPU-ms/call"]
        print(table([*headers, "server CPU-ms/call", "load avg"], rows))
    floor = sdk.get(FLOOR)
    if sdk:
        print(f"\nofficial SDK client, one call at a time, {args.calls} calls of echo")
        rows = [
            [name, f"{p50:.2f}", f"{p99:.2f}", f"{p50 / floor[0]:.2f}" if floor else "-"]
            for name, (p50, p99) in sdk.items()
        ]
        print(table(["path", "p50 ms", "p99 ms", "p50 / SDK floor"], rows))
    lines: list[list[str]] = []
    for mcpd in [name for name in [*loads, *sdk] if name.startswith("mcpd,")]:
        if mcpd in (row[0] for row in lines):
            continue
        load, proxy, gateway = loads.get(mcpd), loads.get(MCP_PROXY), loads.get(SUPERGATEWAY)
        row = [mcpd]
        if load and proxy:
            row.append(ratio(load.bridge_cpu / load.calls / (proxy.bridge_cpu / proxy.calls), 0.5))
        else:
            row.append("-")
        row.append(ratio(load.rate / gateway.rate, 1, True) if load and gateway else "-")
        row.append(ratio(load.p99_ms / proxy.p99_ms, 1) if load and proxy else "-")
        row.append(ratio(sdk[mcpd][0] / floor[0], 1.25) if mcpd in sdk and floor else "-")
        row.append(f"{load.errors} ({'met' if load.errors == 0 else 'not met'})" if load else "-")
        lines.append(row)
    if any(cell != "-" for row in lines for cell in row[1:]):
        print("\nratios (issue 10 goals)")
        headers = ["", "CPU/call / mcp-proxy's (<= 0.5)", "calls/s / supergateway's (>= 1)"]
        headers += ["p99 / mcp-proxy's (<= 1)", "SDK p50 / SDK floor (<= 1.25)", "errors (0)"]
        print(table(headers, lines))
    costs = audit_costs(loads)
    if costs:
        print("\nthe audit trail's cost: mcpd CPU-ms/call with it on minus off (means of the runs)")
        print(table(["endpoint", "on", "off", "on - off", "calls/s on", "calls/s off"], costs))


def audit_costs(loads: dict[str, Load]) -> list[list[str]]:
    """Per endpoint, the mean CPU-ms/call and calls/s of the runs with the audit on and off."""
    rows = []
    for endpoint in (MCPD_SERVER, MCPD_PROJECT):
        runs = {
            audit: [
                load
                for name, load in loads.items()
                if name.startswith(f"{endpoint}, audit {audit}")
            ]
            for audit in ("on", "off")
        }
        if not runs["on"] or not runs["off"]:
            continue
        cpu = {a: statistics.mean(r.per_call_ms(r.bridge_cpu) for r in runs[a]) for a in runs}
        rate = {a: statistics.mean(r.rate for r in runs[a]) for a in runs}
        rows.append(
            [
                endpoint.removeprefix("mcpd, "),
                f"{cpu['on']:.3f}",
                f"{cpu['off']:.3f}",
                f"{cpu['on'] - cpu['off']:+.3f}",
                f"{rate['on']:,.0f}",
                f"{rate['off']:,.0f}",
            ]
        )
    return rows


def audit_schedule(audit: str | None, repeat: int) -> list[tuple[bool | None, str]]:
    """The mcpd runs: (audit on, the label of its rows). `both`: on and off interleaved, the
    order turned each round (on off, off on, ...) so that neither always goes first."""
    if audit != "both":
        on = None if audit is None else audit == "on"
        return [(on, "" if on is not False else ", audit off")] * max(repeat, 1)
    runs: list[tuple[bool | None, str]] = []
    for i in range(max(repeat, 1)):
        order = (True, False) if i % 2 == 0 else (False, True)
        suffix = f" #{i + 1}" if repeat > 1 else ""
        runs += [(on, f", audit {'on' if on else 'off'}{suffix}") for on in order]
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=20, help="seconds of load per bridge")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of load before that")
    parser.add_argument("--threads", type=int, default=4, help="wrk threads = MCP sessions")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--calls", type=int, default=500, help="sequential SDK-client calls")
    parser.add_argument("--only", nargs="+", choices=BRIDGES, default=BRIDGES)
    parser.add_argument("--no-load", action="store_true", help="only the SDK-client comparison")
    parser.add_argument("--no-sdk", action="store_true", help="only the wrk load")
    parser.add_argument("--verbose", action="store_true", help="print wrk's own output")
    parser.add_argument(
        "--audit",
        choices=["on", "off", "both"],
        help="mcpd's audit trail (MCPD_AUDIT_ENABLED; default: as the environment says); "
        "both: A/B runs, interleaved",
    )
    parser.add_argument("--repeat", type=int, default=1, help="mcpd runs per audit setting")
    args = parser.parse_args()
    # A SIGTERM unwinds like Ctrl-C, so that every process started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    run = Run(args, peers())
    loads: dict[str, Load] = {}
    sdk: dict[str, tuple[float, float]] = {}
    started: dict[str, list[Callable[[], Bridges]]] = {
        "http": [run.own_http],
        "mcp-proxy": [run.mcp_proxy],
        "supergateway": [run.supergateway],
        "mcpd": [partial(run.mcpd, *run_of) for run_of in audit_schedule(args.audit, args.repeat)],
        "floor": [run.floor],
    }
    try:
        if "stdio" in args.only and not args.no_sdk:
            stdio = StdioServerParameters(command=SERVER[0], args=[*SERVER[1:], "stdio"])
            with (run.logs / "stdio.log").open("w") as log:
                sdk["direct STDIO (SDK client spawns the server)"] = run.sdk(
                    "direct STDIO", lambda: stdio_client(stdio, errlog=log), "echo"
                )
        for key in BRIDGES[1:]:
            if key not in args.only:
                continue
            for bridged in started[key]:
                say(f"starting {key} (load average {os.getloadavg()[0]:.2f})")
                with bridged() as bridges:
                    for bridge in bridges:
                        if not args.no_sdk:
                            sdk[bridge.name] = run.sdk(bridge.name, bridge.connect, bridge.tool)
                        if not args.no_load and key != "floor":
                            say(f"{bridge.name}: wrk {args.warmup} s warm-up, {args.duration} s")
                            loads[bridge.name] = run.load(bridge)
    except BaseException:
        say(f"logs kept in {run.logs}")
        report(args, loads, sdk)
        raise
    shutil.rmtree(run.logs, ignore_errors=True)
    report(args, loads, sdk)


if __name__ == "__main__":
    main()
