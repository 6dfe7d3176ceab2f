"""Shared by the benchmarks: starting a real mcpd and other processes (and stopping their whole
process trees), free ports, readiness polls, CPU and memory of process trees, wrk load with
mcp.lua, timing calls with the official SDK client, and printing tables."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

TOKEN = "mcp_bench-token"
LUA = Path(__file__).parent / "mcp.lua"
# The counters of mcp.lua's MCPBENCH line that are failed calls: non-200 answers, JSON-RPC errors
# (or no result, or isError), and wrk's own socket errors and timeouts.
WRK_ERRORS = ("rpc_errors", "non2xx", "connect", "read", "write", "timeout")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(
    port: int, process: subprocess.Popen[Any] | None = None, timeout: float = 120
) -> None:
    """Polls until something accepts connections on 127.0.0.1:port; fails early when the
    process that should listen has exited."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited ({process.returncode}) before listening")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on {port} after {timeout:.0f} s")
        time.sleep(0.05)


def start(
    args: Sequence[str], log: IO[bytes] | int = subprocess.DEVNULL, **env: str
) -> subprocess.Popen[bytes]:
    """Starts a process in a session of its own, so that stop() finds every process it starts,
    even those that leave its tree."""
    return subprocess.Popen(
        list(args),
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[Any], timeout: float = 120) -> None:
    """SIGTERM to the process, then to whatever of its tree outlives it (npx, for one, does not
    pass SIGTERM on to the server it runs); SIGKILL to what is left after a grace period."""
    members = {pid: started for pid in process_tree(process.pid) if (started := start_time(pid))}
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for pid in process_tree(process.pid):  # the session outlives its leader
        if pid != process.pid and (started := start_time(pid)):
            members[pid] = started
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [pid for pid, started in members.items() if start_time(pid) == started]
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [pid for pid in alive if start_time(pid) == members[pid]]
        if not alive:
            return


class Mcpd:
    """A real mcpd process, ready (/readyz) when constructed. `env` is added to its environment;
    `data_dir` and `port` given again start it anew where an earlier one ran (its log goes on)."""

    def __init__(self, data_dir: Path | None = None, port: int | None = None, **env: str) -> None:
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="mcpd-bench-"))
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (self.data_dir / "mcpd.log").open("ab")
        self.process = start(
            [sys.executable, "-m", "mcpctl.daemon"],
            log=self.log,
            MCPD_DATA_DIR=str(self.data_dir),
            MCPD_PORT=str(self.port),
            MCPD_ADMIN_TOKEN=TOKEN,
            MCPD_LOG_LEVEL="warning",
            **env,
        )
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if self.http.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"mcpd did not start; see {self.data_dir / 'mcpd.log'}")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise

    def create_server(self, name: str, spec: dict[str, Any], timeout: float = 300) -> None:
        """Creates a server through the REST API and waits until an instance of it is RUNNING."""
        doc = {"metadata": {"name": name}, "spec": spec}
        self.http.post("/api/v1/servers", json=doc).raise_for_status()
        deadline = time.monotonic() + timeout
        while not any(
            i["server"] == name and i["status"] == "RUNNING"
            for i in self.http.get("/api/v1/instances").json()["items"]
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"server {name} not RUNNING after {timeout:.0f} s")
            time.sleep(0.2)

    def processes(self) -> list[int]:
        """mcpd, its Ray processes and host actors, and the servers they run (see process_tree)."""
        return process_tree(self.process.pid)

    def stop(self) -> None:
        stop(self.process)
        self.http.close()
        self.log.close()


@dataclass
class Wrk:
    """wrk with mcp.lua against one MCP endpoint: each thread is one MCP session (opened in the
    thread's init(), before wrk's clock starts), each connection loops tools/call `tool` on it.
    run() or start() + result() give mcp.lua's MCPBENCH counters (see WRK_ERRORS); several
    started at once load several endpoints at the same time."""

    binary: str
    url: str
    tool: str = "echo"
    token: str = ""
    threads: int = 4
    connections: int = 32

    def command(self, seconds: int) -> list[str]:
        command = [self.binary, f"-t{self.threads}", f"-c{self.connections}", f"-d{seconds}s"]
        command += ["--timeout", "30s", "--latency", "-s", str(LUA), self.url]
        return [*command, "--", self.tool, self.token]

    def start(self, seconds: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(seconds), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def result(
        self, process: subprocess.Popen[str], seconds: int, verbose: bool = False
    ) -> dict[str, int]:
        try:
            stdout, stderr = process.communicate(timeout=seconds + 300)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        lines = [line for line in stdout.splitlines() if line.startswith("MCPBENCH ")]
        if process.returncode != 0 or not lines:
            raise RuntimeError(f"wrk on {self.url} failed:\n{stdout}{stderr}")
        if verbose:
            print(stdout, file=sys.stderr)
        return {k: int(v) for k, v in (f.split("=") for f in lines[-1].split()[1:])}

    def run(self, seconds: int, verbose: bool = False) -> dict[str, int]:
        return self.result(self.start(seconds), seconds, verbose)


def wrk_errors(result: dict[str, int]) -> int:
    return sum(result[k] for k in WRK_ERRORS)


def _stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name: [0] state, [1] ppid, [3] session,
    [11] utime, [12] stime, [19] start time."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot), None if it is gone: with the pid, it
    names one process even after pids are reused."""
    try:
        fields = _stat(pid)
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _all_stats() -> dict[int, list[str]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                found[int(entry.name)] = _stat(int(entry.name))
    return found


def descendants(pid: int, stats: dict[int, list[str]] | None = None) -> list[int]:
    """pid and every process below it (by parent pid)."""
    children: dict[int, list[int]] = {}
    for child, fields in (stats or _all_stats()).items():
        children.setdefault(int(fields[1]), []).append(child)
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def process_tree(pid: int) -> list[int]:
    """The descendants of pid, plus every process of the session that pid leads (a process
    started by start() leads its own session). The session catches what left the tree: a Ray
    process whose parent exited is re-parented to init but keeps the session of the mcpd that
    started it; processes that start sessions of their own (servers under the local
    orchestrator) are found as descendants."""
    stats = _all_stats()
    found = set(descendants(pid, stats))
    found.update(p for p, fields in stats.items() if int(fields[3]) == pid)
    return sorted(found)


def cpu_by_process(pids: list[int]) -> dict[tuple[int, int], float]:
    """CPU seconds (utime + stime) of each live process, keyed by (pid, start time)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            fields = _stat(pid)
            found[(pid, int(fields[19]))] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_by_process(pids).values())


def pss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


async def sdk_calls(
    connect: Callable[[], AbstractAsyncContextManager[Any]],
    calls: int,
    concurrency: int = 1,
    tool: str = "echo",
    warmup: int = 1,
) -> tuple[float, list[float]]:
    """Calls `tool` (an echo) `calls` times with the official SDK client over one session,
    `concurrency` at a time, after `warmup` calls; returns calls/s and the latencies (s)."""
    from mcp.client import Client

    latencies: list[float] = []
    async with Client(connect(), mode="legacy") as client:
        for i in range(warmup):
            await client.call_tool(tool, {"message": f"warm-up {i}"})
        queue = iter(range(calls))

        async def worker() -> None:
            for i in queue:
                started = time.perf_counter()
                result = await client.call_tool(tool, {"message": f"m{i}"})
                latencies.append(time.perf_counter() - started)
                assert getattr(result.content[0], "text", None) == f"Echo: m{i}", result

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return calls / elapsed, latencies


def percentiles(latencies: list[float]) -> tuple[float, float]:
    """p50 and p99 of latencies in seconds, in milliseconds."""
    cuts = statistics.quantiles(latencies, n=100)
    return cuts[49] * 1000, cuts[98] * 1000


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    return "\n".join([line, rule, *body])
