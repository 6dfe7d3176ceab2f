"""A 3-node Ray cluster on this machine (ray.cluster_utils.Cluster) under one mcpd runtime:
where the hosts land, and what happens when a node goes away. Run in a process of its own
(the suite's Ray is one per process): prints one JSON line with what it saw.

    python -m tests.e2e.multinode WORKDIR
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import ray
from cryptography.fernet import Fernet
from ray.cluster_utils import Cluster

from mcpctl.actors.host import HostConfig
from mcpctl.actors.runtime import Runtime
from mcpctl.mcp.caller import Caller
from tests.conftest import fresh_database
from tests.helpers.jsonrpc import call
from tests.helpers.waiting import until
from tests.helpers.world import MISBEHAVING

SERVERS = [f"s{i}" for i in range(6)]
CALLER = Caller("session", "admin@example.com", "servers/x")


def save(database: Any, name: str) -> None:
    from mcpctl.models.kinds import SERVER
    from mcpctl.store.repositories.specs import SERVERS as REPO

    resource = SERVER.parse(
        {
            "metadata": {"name": name},
            "spec": {"command": sys.executable, "args": [str(MISBEHAVING)]},
        }
    )
    with database.transaction() as session:
        REPO.put(session, resource, "system@mcpctl.io")


async def answer(runtime: Runtime, server: str, deadline: float) -> bool:
    """A good tools/call through the data plane before `deadline`."""
    message = call(1, "echo", text=server)
    while time.monotonic() < deadline:
        items = [item async for item in runtime.exchange(server, CALLER, message)]
        if items and "result" in items[-1]:
            return True
        await asyncio.sleep(0.2)
    return False


async def scenario(workdir: Path) -> dict[str, Any]:
    database = fresh_database("sqlite", workdir)
    for name in SERVERS:
        save(database, name)
    config = HostConfig(0, database.url, Fernet.generate_key(), str(workdir / "data"))
    # Shared (as on any cluster of several nodes): the controller and hosts are detached, so
    # a node's loss takes only what ran on it.
    runtime = Runtime(config, resync_seconds=5, hosts=3, namespace="multinode", shared=True)
    await runtime.start()
    try:
        deadline = time.monotonic() + 120
        up = [await answer(runtime, s, deadline) for s in SERVERS]
        nodes = [(await h.dataplane_address.remote())["node"] for h in runtime.hosts]
        return {"answered": up, "host_nodes": nodes, "runtime": runtime}
    except BaseException:
        await teardown(runtime)
        raise


async def teardown(runtime: Runtime) -> None:
    await runtime.stop()
    await runtime.controller.shutdown.remote()
    ray.kill(runtime.controller, no_restart=True)


def main() -> None:
    workdir = Path(sys.argv[1])
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "object_store_memory": 80 << 20},
    )
    workers = [cluster.add_node(num_cpus=1, object_store_memory=80 << 20) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    until(  # every node's resources are known
        ray.available_resources,
        lambda resources: resources.get("CPU", 0) >= 3,
        timeout=60,
        interval=0.1,
        what=lambda resources: resources,
    )
    loop = asyncio.new_event_loop()
    report: dict[str, Any] = {}
    try:
        first = loop.run_until_complete(scenario(workdir))
        runtime: Runtime = first.pop("runtime")
        report.update(first)
        # One worker node goes away with whatever hosts it ran.
        gone = workers[0]
        lost = [s for s, i in runtime._placed.items() if first["host_nodes"][i] == gone.node_id]
        removed = time.monotonic()
        cluster.remove_node(gone)

        async def after() -> dict[str, Any]:
            deadline = time.monotonic() + 180
            back = [await answer(runtime, s, deadline) for s in SERVERS]
            nodes = [(await h.dataplane_address.remote())["node"] for h in runtime.hosts]
            return {"answered_after": back, "host_nodes_after": nodes}

        report.update(loop.run_until_complete(after()))
        report["recovery_seconds"] = round(time.monotonic() - removed, 2)
        report["lost_servers"] = lost
        report["removed_node"] = gone.node_id
        loop.run_until_complete(teardown(runtime))
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
