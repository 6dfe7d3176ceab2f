"""One mcpd, N servers x 2 replicas of a tiny STDIO server: time to all RUNNING, memory, idle CPU.

python -m bench.fleet [--servers 200] [--replicas 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import Mcpd, cpu_seconds, descendants, pss_mib, table

TINY = str(Path(__file__).with_name("tiny_server.py"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--idle-seconds", type=float, default=10)
    args = parser.parse_args()
    mcpd = Mcpd(MCPD_RESYNC_SECONDS="30")
    try:
        base_pids = descendants(mcpd.process.pid)
        base_memory = pss_mib(base_pids)
        want = args.servers * args.replicas
        spec = {"command": sys.executable, "args": [TINY], "replicas": args.replicas}
        started = time.monotonic()

        def create(i: int) -> None:
            doc = {"metadata": {"name": f"tiny-{i:03d}"}, "spec": spec}
            mcpd.http.post("/api/v1/servers", json=doc).raise_for_status()

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(args.servers)))
        created = time.monotonic() - started
        running = 0
        while running < want:
            items = mcpd.http.get("/api/v1/instances").json()["items"]
            running = sum(1 for i in items if i["status"] == "RUNNING")
            if time.monotonic() - started > 900:
                raise SystemExit(f"only {running}/{want} RUNNING after 900 s")
            time.sleep(0.5)
        all_running = time.monotonic() - started
        time.sleep(3)  # let start-up work settle before measuring idle
        pids = descendants(mcpd.process.pid)
        servers = [
            p for p in pids if TINY in Path(f"/proc/{p}/cmdline").read_text(errors="replace")
        ]
        control = [p for p in pids if p not in servers]
        cpu_before = cpu_seconds(control)
        time.sleep(args.idle_seconds)
        idle_cpu = (cpu_seconds(control) - cpu_before) / args.idle_seconds * 100
        rows = [
            ["servers x replicas", f"{args.servers} x {args.replicas} = {want}"],
            ["create via API", f"{created:.1f} s"],
            ["time to all RUNNING", f"{all_running:.1f} s"],
            ["mcpd + Ray PSS, empty", f"{base_memory:.0f} MiB"],
            ["mcpd + Ray PSS, fleet up", f"{pss_mib(control):.0f} MiB ({len(control)} processes)"],
            ["server processes PSS", f"{pss_mib(servers):.0f} MiB ({len(servers)} processes)"],
            ["idle CPU of mcpd + Ray", f"{idle_cpu:.1f} % of one core"],
        ]
        print(table(["fleet", "value"], rows))
    finally:
        mcpd.stop()


if __name__ == "__main__":
    main()
