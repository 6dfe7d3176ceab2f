"""mcpd as gateway replicas of one deployment: throughput of 1 vs 2 replicas, time to recover
from each kill -9.

Setup: one Ray cluster started here (`ray start --head --block` in a session of its own, on
loopback, token authentication), one shared SQLite file, one cluster key; gateway replicas A
and B are mcpd processes with MCPD_SHARED=true and the same MCPD_DEPLOYMENT, joined to that
Ray (RAY_ADDRESS). One server, `@modelcontextprotocol/server-everything` (STDIO, npx), on one
host actor; endpoint /mcp/servers/everything, tool echo.

1. Throughput: bench.load's wrk load (mcp.lua; 4 sessions, 32 connections) on A alone (B not
   started yet), then split over A and B (two wrk at once, 2 threads / 16 connections each).
   calls/s is the sum; bridge CPU-ms per call counts every mcpd and Ray process (the head's
   tree: GCS, raylet, agents, workers, the controller and host actors), the server's processes
   apart (bench.load.split_cpu).
2. Recovery: one MCP session, a tools/call every ~20 ms (a client that fails over to the other
   replica on a connection error or 503, as a load balancer would), while the bench kills with
   SIGKILL: (a) replica A, which it then restarts on the same port; (b) the controller actor's
   process; (c) the host actor's process; (d) the backend server's process (node). Times are
   from the kill to the first good answer on the affected path; failed calls are counted from
   the kill until calls have answered well for a while. Before each kill the backend has been
   up 11 s, so that its supervisor takes a crash as a first one (no restart back-off).

    .venv/bin/python -m bench.replicas [--duration 20] [--warmup 3] [--repeat 5] [--only a b c d]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from bench.common import (
    TOKEN,
    Mcpd,
    Wrk,
    cmdline,
    descendants,
    free_port,
    process_tree,
    start,
    start_time,
    stop,
    table,
    wait_listening,
    wrk_errors,
)
from bench.load import PACKAGE, SERVER_MARK, peers, revision, say, split_cpu

DEPLOYMENT = "bench-replicas"
SERVER = "everything"
PATH = f"/mcp/servers/{SERVER}"
NAMESPACE = "mcpd"  # mcpctl.actors.controller.RAY_NAMESPACE
INTERVAL = 0.02  # between the starts of two probe calls
SETTLED = 50  # good calls in a row after the last failure: the path is back for good
# A backend killed before it was up this long restarts after a back-off (mcpctl.controllers.
# backoff: healthy_after 10 s): each kill waits for it, so that each one is a first crash.
HEALTHY_AFTER = 11.0
KILLS = {
    "a": "gateway replica A",
    "b": "controller actor",
    "c": "host actor",
    "d": "backend server (node)",
}
RAY_ENV = {
    "RAY_AUTH_MODE": "token",
    "RAY_USAGE_STATS_ENABLED": "0",
    # Keeps 127.0.0.1 as the node's address in every process (as mcpd's own local Ray does).
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}


class Deployment:
    """Everything the bench starts: Ray head, gateway replicas, the deployment's actors. close()
    stops all of it, also after an error: replicas, then the controller (shared mode: no replica
    stops the deployment) and its hosts, the Ray head's whole tree, and any backend process seen
    here that outlived its host."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mcpctl-bench-rep-"))
        token = self.root / "ray-token"
        token.write_text(secrets.token_hex(32) + "\n")
        token.chmod(0o600)
        # Children inherit these; this process imports Ray only after they are set.
        os.environ.pop("RAY_AUTH_TOKEN", None)
        os.environ.pop("RAY_ADDRESS", None)
        os.environ.update(RAY_ENV, RAY_AUTH_TOKEN_PATH=str(token))
        self.ray_port = free_port()
        self.address = f"127.0.0.1:{self.ray_port}"
        self.env = {
            "RAY_ADDRESS": self.address,
            "MCPD_SHARED": "true",
            "MCPD_DEPLOYMENT": DEPLOYMENT,
            "MCPD_ACTOR_HOSTS": "1",
            "MCPD_DATABASE_URL": f"sqlite:///{self.root / 'shared.db'}",
            "MCPD_SECRET_KEY": Fernet.generate_key().decode(),
        }
        self.head: subprocess.Popen[bytes] | None = None
        self.head_log = (self.root / "ray-head.log").open("wb")
        self.replicas: dict[str, Mcpd] = {}
        self.backends_seen: dict[int, int] = {}  # pid -> start time
        self.driver = False

    def start_ray(self) -> None:
        command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block"]
        command += [f"--port={self.ray_port}", "--num-cpus=2", "--include-dashboard=false"]
        command += ["--node-ip-address=127.0.0.1", f"--temp-dir={self.root / 'ray'}"]
        command += [f"--object-store-memory={80 * 1024**2}", "--disable-usage-stats"]
        self.head = start(command, log=self.head_log)
        wait_listening(self.ray_port, self.head)

    def ray(self) -> Any:
        """Ray, with this process joined to the bench's cluster as a driver (first use only: the
        throughput runs happen before it)."""
        import ray

        if not self.driver:
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
            self.driver = True
        return ray

    def actor(self, name: str) -> Any:
        return self.ray().get_actor(f"{DEPLOYMENT}-{name}", namespace=NAMESPACE)

    def start_replica(self, name: str) -> Mcpd:
        """Starts replica `name`, again where it ran before when it did (same port and dir)."""
        old = self.replicas.get(name)
        data_dir = old.data_dir if old else self.root / name
        data_dir.mkdir(exist_ok=True)
        self.replicas[name] = Mcpd(data_dir, old.port if old else None, **self.env)
        return self.replicas[name]

    def processes(self) -> list[int]:
        """Every mcpd replica and every process of the Ray head (with the servers below it)."""
        pids = set(process_tree(self.head.pid)) if self.head else set()
        for mcpd in self.replicas.values():
            pids.update(mcpd.processes())
        return sorted(pids)

    def backends(self) -> list[int]:
        """The server's processes (npx, sh, node) below the Ray head, remembered for close()."""
        assert self.head is not None
        found: set[int] = set()
        for pid in process_tree(self.head.pid):
            if SERVER_MARK in cmdline(pid):
                found.update(descendants(pid))
        for pid in found:
            if started := start_time(pid):
                self.backends_seen[pid] = started
        return sorted(p for p in found if start_time(p))

    def wait_server_healthy(self) -> None:
        """Until the one server process has been up HEALTHY_AFTER seconds."""
        deadline = time.monotonic() + 300
        while True:
            servers = self.servers_alive()
            uptime = float(Path("/proc/uptime").read_text().split()[0])
            ticks = os.sysconf("SC_CLK_TCK")
            ages = [uptime - (start_time(p) or 0) / ticks for p in servers]
            if len(servers) == 1 and ages[0] >= HEALTHY_AFTER:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"no server process up {HEALTHY_AFTER:.0f} s: {servers}")
            time.sleep(0.2)

    def servers_alive(self) -> list[int]:
        """The server processes (node: a backend process without children) alive anywhere,
        among those ever seen below the Ray head: one, unless a kill duplicated or leaked one."""
        self.backends()
        return [
            pid
            for pid, started in self.backends_seen.items()
            if start_time(pid) == started and descendants(pid) == [pid]
        ]

    def close(self) -> None:
        for mcpd in self.replicas.values():
            with contextlib.suppress(Exception):
                mcpd.stop()
        if self.head is not None and self.head.poll() is None:
            with contextlib.suppress(Exception):
                ray = self.ray()
                controller = self.actor("controller")
                ray.get(controller.shutdown.remote(), timeout=60)
                ray.kill(controller, no_restart=True)
        if self.driver:
            with contextlib.suppress(Exception):
                self.ray().shutdown()
        if self.head is not None:
            with contextlib.suppress(Exception):
                self.backends()
            stop(self.head)
        for pid, started in self.backends_seen.items():
            if start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.head_log.close()


# -- 1. throughput -------------------------------------------------------------------------


@dataclass
class Throughput:
    label: str
    runs: list[tuple[str, dict[str, int]]]  # (replica, mcp.lua's counters)
    bridge_cpu: float
    server_cpu: float
    load_average: float
    busy: float  # of the machine's cores during the run (wrk and anything else included)

    @property
    def calls(self) -> int:
        return sum(r["calls"] for _, r in self.runs)

    @property
    def rate(self) -> float:
        return sum(r["calls"] / (r["duration_us"] / 1e6) for _, r in self.runs)

    @property
    def errors(self) -> int:
        return sum(wrk_errors(r) for _, r in self.runs)


def load(
    deployment: Deployment, binary: str, names: list[str], args: argparse.Namespace
) -> Throughput:
    """bench.load's wrk load, split evenly over the replicas `names`, all at the same time."""
    wrks = {
        name: Wrk(
            binary,
            deployment.replicas[name].url + PATH,
            "echo",
            TOKEN,
            args.threads // len(names),
            args.connections // len(names),
        )
        for name in names
    }

    def together(seconds: int) -> list[tuple[str, dict[str, int]]]:
        running = {name: wrk.start(seconds) for name, wrk in wrks.items()}
        try:
            return [(n, wrks[n].result(p, seconds, args.verbose)) for n, p in running.items()]
        finally:
            for process in running.values():
                if process.poll() is None:
                    process.kill()
                    process.wait()

    if args.warmup > 0:
        together(args.warmup)
    load_average = os.getloadavg()[0]
    assert deployment.head is not None
    before = split_cpu(deployment.head.pid, deployment.processes())
    idle, total = machine_ticks()
    runs = together(args.duration)
    idle_after, total_after = machine_ticks()
    after = split_cpu(deployment.head.pid, deployment.processes())
    bridge, server = (sum(v - before[i].get(k, 0.0) for k, v in after[i].items()) for i in (0, 1))
    busy = 1 - (idle_after - idle) / max(total_after - total, 1)
    return Throughput(" + ".join(names), runs, bridge, server, load_average, busy)


def machine_ticks() -> tuple[int, int]:
    """Idle (idle + iowait) and all ticks of the machine's CPUs since boot (/proc/stat)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return ticks[3] + ticks[4], sum(ticks)


# -- 2. recovery ---------------------------------------------------------------------------


@dataclass
class Call:
    sent: float
    done: float
    replica: str | None  # the one that answered; None when none could
    ok: bool
    tried: list[str]  # replicas that were away (connection error, 503) before that
    detail: str = ""  # what a failed call got


class Prober:
    """One MCP session, a tools/call echo every INTERVAL s. Each call goes to the replicas in
    order of preference (always A first, or alternating) and to the next one when a replica is
    away: a connection error or 503 (client-side failover). Any other answer is final: good
    only with the echoed text."""

    def __init__(self, urls: dict[str, str], alternate: bool) -> None:
        self.urls, self.alternate = urls, alternate
        self.calls: list[Call] = []
        self.clients = {name: httpx.Client(base_url=url, timeout=60) for name, url in urls.items()}
        self.headers = open_session(self.clients["A"])
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.turn = 0

    def __enter__(self) -> Prober:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(120)
        for client in self.clients.values():
            client.close()

    def _run(self) -> None:
        while not self.done.is_set():
            self.turn += 1
            sent = time.monotonic()
            self.calls.append(self._call(self.turn, sent))
            self.done.wait(max(0.0, sent + INTERVAL - time.monotonic()))

    def _call(self, turn: int, sent: float) -> Call:
        names = list(self.clients)
        if self.alternate and turn % 2:
            names.reverse()
        body = {
            "jsonrpc": "2.0",
            "id": turn,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": f"m{turn}"}},
        }
        tried = []
        for name in names:
            try:
                answer = self.clients[name].post(PATH, json=body, headers=self.headers)
            except httpx.TransportError:
                tried.append(name)
                continue
            if answer.status_code == 503:
                tried.append(name)
                continue
            good = f"Echo: m{turn}" in answer.text and not re.search(
                r'"isError"\s*:\s*true', answer.text
            )
            detail = "" if good else f"{answer.status_code} {answer.text[-160:]!r}"
            return Call(sent, time.monotonic(), name, good, tried, detail)
        return Call(sent, time.monotonic(), None, False, tried, "every replica away")

    def since(self, moment: float) -> list[Call]:
        """The calls that ended after `moment` (those in flight then too)."""
        return [c for c in list(self.calls) if c.done >= moment]

    def settled(self, moment: float) -> bool:
        calls = self.since(moment)
        failed = [i for i, c in enumerate(calls) if not c.ok]
        return len(calls) - (failed[-1] + 1 if failed else 0) >= SETTLED

    def wait_settled(self, moment: float, replica: str | None = None, timeout: float = 300) -> None:
        """Until calls answer well again after `moment` (and `replica` has answered one)."""
        deadline = time.monotonic() + timeout
        while not self.settled(moment) or (
            replica and not any(c.ok and c.replica == replica for c in self.since(moment))
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"calls did not answer well again within {timeout:.0f} s")
            time.sleep(0.05)


def open_session(client: httpx.Client) -> dict[str, str]:
    """initialize + notifications/initialized (as mcp.lua does); the headers of the session."""
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Accept": "application/json, text/event-stream",
    }
    params = {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "bench-replicas", "version": "1"},
    }
    initialize = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}
    begun = client.post(PATH, json=initialize, headers=headers)
    begun.raise_for_status()
    headers["Mcp-Session-Id"] = begun.headers["Mcp-Session-Id"]
    found = re.search(r'"protocolVersion"\s*:\s*"([^"]+)"', begun.text)
    headers["MCP-Protocol-Version"] = found.group(1) if found else params["protocolVersion"]
    notified = client.post(
        PATH, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
    )
    notified.raise_for_status()
    return headers


@dataclass
class Recovery:
    """One kind of kill, repeated: times (s) per timed path, failed and all calls, slowest."""

    kind: str
    times: dict[str, list[float]] = field(default_factory=dict)
    failed: int = 0
    calls: int = 0
    slowest: float = 0.0
    servers_after: list[int] = field(default_factory=list)  # server processes alive

    def add(self, path: str, seconds: float) -> None:
        self.times.setdefault(path, []).append(seconds)


def back_after(calls: list[Call], killed: float) -> float:
    """From the kill to the first good answer to a call sent after the last failed one."""
    failed = [c.sent for c in calls if not c.ok]
    good = [c for c in calls if c.ok and c.sent > (max(failed) if failed else killed)]
    return good[0].done - killed


def kill(pid: int) -> float:
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    return killed


def recover(deployment: Deployment, kind: str, recovery: Recovery) -> None:
    urls = {name: deployment.replicas[name].url for name in ("A", "B")}
    ray = deployment.ray()
    deployment.wait_server_healthy()
    with Prober(urls, alternate=kind != "a") as prober:
        prober.wait_settled(time.monotonic())  # the session answers on both before the kill
        if kind == "a":
            old = deployment.replicas["A"]
            killed = kill(old.process.pid)
            old.process.wait()
            old.stop()
            began = time.monotonic()
            deployment.start_replica("A")
            started = time.monotonic() - began
            prober.wait_settled(killed, replica="A")
            calls = prober.since(killed)
            over = next(c for c in calls if c.ok and c.replica == "B" and "A" in c.tried)
            again = next(c for c in calls if c.ok and c.replica == "A" and c.sent > killed)
            recovery.add("a retry on B answers", over.done - killed)
            recovery.add("restarted A answers the session", again.done - killed)
            recovery.add("(mcpd itself: spawn to /readyz)", started)
        elif kind == "b":
            controller = deployment.actor("controller")
            old = ray.get(controller.process_id.remote())
            killed = kill(old)
            while True:
                try:
                    ray.get(controller.placement.remote(), timeout=10)
                    break
                except ray.exceptions.RayError:
                    time.sleep(INTERVAL)
            recovery.add("controller.placement() answers", time.monotonic() - killed)
            assert ray.get(controller.process_id.remote()) != old
            prober.wait_settled(killed)
            calls = prober.since(killed)
        else:
            if kind == "c":
                host = deployment.actor("host-0")
                killed = kill(ray.get(host.process_id.remote()))
            else:
                # The server itself: the last of npx -> sh -> node, the one without children.
                servers = deployment.servers_alive()
                assert len(servers) == 1, [(p, cmdline(p)) for p in deployment.backends()]
                killed = kill(servers[0])
            prober.wait_settled(killed)
            calls = prober.since(killed)
            recovery.add("calls answer again", back_after(calls, killed))
        for call in calls:
            if not call.ok:
                say(f"  failed call via {call.replica or '-'}: {call.detail}")
        recovery.failed += sum(not c.ok for c in calls)
        recovery.calls += len(calls)
        recovery.slowest = max(recovery.slowest, *(c.done - c.sent for c in calls))
    recovery.servers_after.append(len(deployment.servers_alive()))


# -- report --------------------------------------------------------------------------------


def report(args: argparse.Namespace, loads: list[Throughput], recoveries: list[Recovery]) -> None:
    if loads:
        print(
            f"\nwrk with bench/mcp.lua: tools/call echo on {PACKAGE} (STDIO) through "
            f"{PATH}; {args.threads} sessions, {args.connections} connections in all; "
            f"{args.duration} s after a {args.warmup} s warm-up; {os.cpu_count()} cores; "
            f"one Ray head, one host actor; mcpd from {revision()}"
        )
        rows = []
        for t in loads:
            per_call = [f"{c * 1000 / max(t.calls, 1):.2f}" for c in (t.bridge_cpu, t.server_cpu)]
            runs = t.runs if len(t.runs) > 1 else []
            first = t.runs[0][1]
            rows.append(
                [
                    t.label,
                    f"{len(t.runs)}",
                    f"{t.rate:,.0f}",
                    "" if runs else f"{first['p50_us'] / 1000:.1f}",
                    "" if runs else f"{first['p99_us'] / 1000:.1f}",
                    str(t.errors),
                    *per_call,
                    f"{t.busy:.0%}",
                    f"{t.load_average:.1f}",
                ]
            )
            for name, r in runs:
                w = f"  {name}: wrk -t{args.threads // len(t.runs)} -c"
                rows.append(
                    [
                        w + f"{args.connections // len(t.runs)}",
                        "",
                        f"{r['calls'] / (r['duration_us'] / 1e6):,.0f}",
                        f"{r['p50_us'] / 1000:.1f}",
                        f"{r['p99_us'] / 1000:.1f}",
                        str(wrk_errors(r)),
                        "",
                        "",
                        "",
                        "",
                    ]
                )
        headers = ["gateway replicas", "n", "calls/s", "p50 ms", "p99 ms", "errors"]
        headers += ["bridge CPU-ms/call", "server CPU-ms/call", "machine busy", "load avg"]
        print(table(headers, rows))
    if recoveries:
        print(
            f"\nkill -9, {args.repeat}x each; one session, a tools/call every "
            f"{INTERVAL * 1000:.0f} ms (A first for A's kill, else alternating, failing over on "
            f"a connection error or 503); the backend up {HEALTHY_AFTER:.0f} s before each kill; "
            f"times from the kill; failed calls from the kill until {SETTLED} good calls in a row"
        )
        rows = []
        for r in recoveries:
            for i, (path, times) in enumerate(r.times.items()):
                ms = sorted(t * 1000 for t in times)
                rows.append(
                    [
                        KILLS[r.kind] if i == 0 else "",
                        path,
                        f"{statistics.median(ms):,.0f}",
                        f"{ms[0]:,.0f}-{ms[-1]:,.0f}",
                        f"{r.failed} / {r.calls}" if i == 0 else "",
                        f"{r.slowest * 1000:,.0f}" if i == 0 else "",
                        ",".join(map(str, r.servers_after)) if i == 0 else "",
                    ]
                )
        headers = ["kill -9 of", "timed until", "median ms", "min-max ms", "failed / calls"]
        print(table([*headers, "slowest call ms", "servers after"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=20, help="seconds of load per run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of load before that")
    parser.add_argument("--threads", type=int, default=4, help="wrk threads = MCP sessions")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5, help="kills of each kind")
    parser.add_argument("--only", nargs="+", choices=sorted(KILLS), default=sorted(KILLS))
    parser.add_argument("--no-load", action="store_true", help="only the kills")
    parser.add_argument("--verbose", action="store_true", help="print wrk's own output")
    parser.add_argument("--keep-logs", action="store_true", help="keep mcpd's and Ray's logs")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: everything is stopped

    binary = peers()["wrk"]
    deployment = Deployment()
    loads: list[Throughput] = []
    recoveries: list[Recovery] = []
    try:
        say(f"starting Ray (load average {os.getloadavg()[0]:.2f}) and replica A")
        deployment.start_ray()
        deployment.start_replica("A")
        spec = {"package": PACKAGE, "runtime": "node", "args": ["stdio"]}
        deployment.replicas["A"].create_server(SERVER, spec)
        if not args.no_load:
            say(f"1 replica: wrk {args.warmup} s warm-up, {args.duration} s load")
            loads.append(load(deployment, binary, ["A"], args))
        say("starting replica B")
        deployment.start_replica("B")
        if not args.no_load:
            say(f"2 replicas: wrk {args.warmup} s warm-up, {args.duration} s load")
            loads.append(load(deployment, binary, ["A", "B"], args))
        for kind in args.only:
            recovery = Recovery(kind)
            for i in range(args.repeat):
                say(f"kill -9 of the {KILLS[kind]} ({i + 1}/{args.repeat})")
                recover(deployment, kind, recovery)
            recoveries.append(recovery)
    except BaseException:
        say(f"logs kept in {deployment.root}")
        report(args, loads, recoveries)
        deployment.close()
        raise
    deployment.close()
    if args.keep_logs:
        say(f"logs kept in {deployment.root}")
    else:
        shutil.rmtree(deployment.root, ignore_errors=True)
    report(args, loads, recoveries)


if __name__ == "__main__":
    main()
