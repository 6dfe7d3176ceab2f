"""The mcpd process itself: killed with SIGKILL it leaves no server process behind, and the
next start brings its servers back exactly once. mcpd joins the suite's Ray (RAY_ADDRESS)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import ray

from tests.e2e.conftest import Mcpd, start_mcpd, stop_mcpd
from tests.e2e.gateway import start_ray
from tests.helpers.mcpd import add_server, instances
from tests.helpers.processes import exited
from tests.helpers.waiting import until

SPEC = {"command": "uvx", "args": ["mcp-server-time"], "replicas": 2}


def running_pids(mcpd: Mcpd, server: str, replicas: int, timeout: float = 120) -> set[int]:

    def running(items: list[dict[str, Any]]) -> set[int]:
        return {i["pid"] for i in items if i["status"] == "RUNNING"}

    items = until(
        lambda: instances(mcpd, server),
        lambda items: len(running(items)) == replicas and len(items) == replicas,
        timeout=timeout,
        interval=0.2,
        what=lambda items: items,
    )
    return running(items)


def test_kill_9_leaves_no_orphans_and_restart_restores(tmp_path: Path) -> None:
    start_ray()
    env = {"RAY_ADDRESS": ray.get_runtime_context().gcs_address, "MCPD_ACTOR_HOSTS": "1"}
    data = tmp_path / "data"
    first = start_mcpd(data, env)
    add_server(first, "clock", SPEC)
    before = running_pids(first, "clock", 2)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    until(
        lambda: all(exited(pid) for pid in before),
        timeout=30,
        interval=0.1,
        what="server processes outlived mcpd",
    )
    second = start_mcpd(data, env)
    try:
        after = running_pids(second, "clock", 2)
        assert not after & before
        assert sorted(p.name for p in (data / "run").glob("*.json")) == [
            "clock-0.json",
            "clock-1.json",
        ]
    finally:
        stop_mcpd(second)
    until(
        lambda: all(exited(pid) for pid in after),
        timeout=30,
        interval=0.1,
        what="a graceful stop left server processes",
    )


def test_mcpd_help_names_its_settings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mcpctl.daemon", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "MCPD_PORT" in result.stdout
