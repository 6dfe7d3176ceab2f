"""Self-healing on the test Kubernetes cluster: N servers as pods, a pod killed at random 50
times; time from deletion to a good tools/call, and from zero to N RUNNING.

    scripts/k8s/cluster.sh up && eval "$(scripts/k8s/cluster.sh env)"
    python -m bench.heal [--servers 10 100] [--kills 50]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from pathlib import Path

import httpx
from kubernetes import client, config

from bench.common import Mcpd, table

TINY = str(Path(__file__).with_name("tiny_server.py"))


def call(mcpd: Mcpd, session: dict[str, str], server: str, n: int) -> bool:
    body = {
        "jsonrpc": "2.0",
        "id": n,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": f"m{n}"}},
    }
    try:
        response = mcpd.http.post(f"/mcp/servers/{server}", json=body, headers=session, timeout=60)
        return response.status_code == 200 and "result" in response.json()
    except (httpx.HTTPError, ValueError):
        return False


def open_session(mcpd: Mcpd, server: str) -> dict[str, str]:
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "heal", "version": "1"},
        },
    }
    response = mcpd.http.post(
        f"/mcp/servers/{server}", json=init, headers={"Accept": "application/json"}, timeout=120
    )
    response.raise_for_status()
    return {"Mcp-Session-Id": response.headers["Mcp-Session-Id"], "Accept": "application/json"}


def run(servers: int, kills: int, core: client.CoreV1Api) -> list[str]:
    namespace = f"bench-heal-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    mcpd = Mcpd(MCPD_ORCHESTRATOR="kubernetes", MCPD_K8S_NAMESPACE=namespace)
    try:
        names = [f"tiny-{i:03d}" for i in range(servers)]
        started = time.monotonic()
        for name in names:
            spec = {"image": "python", "args": [TINY]}
            mcpd.http.post(
                "/api/v1/servers", json={"metadata": {"name": name}, "spec": spec}
            ).raise_for_status()
        while True:
            items = mcpd.http.get("/api/v1/instances").json()["items"]
            if sum(1 for i in items if i["status"] == "RUNNING") == servers:
                break
            time.sleep(0.2)
        to_running = time.monotonic() - started
        sessions = {name: open_session(mcpd, name) for name in names}
        heals = []
        for n in range(kills):
            victim = random.choice(names)
            pod = next(
                i["pod"]
                for i in mcpd.http.get("/api/v1/instances", params={"server": victim}).json()[
                    "items"
                ]
            )
            deleted = time.monotonic()
            core.delete_namespaced_pod(pod, namespace)
            while not call(mcpd, sessions[victim], victim, n):
                time.sleep(0.05)
            heals.append(time.monotonic() - deleted)
        cuts = statistics.quantiles(heals, n=100)
        return [
            str(servers),
            f"{to_running:.1f} s",
            str(kills),
            f"{cuts[49]:.2f} s",
            f"{cuts[98]:.2f} s",
        ]
    finally:
        mcpd.stop()
        core.delete_namespace(namespace)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--kills", type=int, default=50)
    args = parser.parse_args()
    core = client.CoreV1Api(config.new_client_from_config())
    rows = [run(n, args.kills, core) for n in args.servers]
    print(table(["servers", "0 -> all RUNNING", "pods killed", "heal p50", "heal p99"], rows))


if __name__ == "__main__":
    main()
