"""The mcpd process itself: killed with SIGKILL it leaves no server process behind, and the
next start brings its servers back exactly once. mcpd joins the suite's Ray (RAY_ADDRESS)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import ray

from tests.conftest import exited
from tests.e2e.conftest import Mcpd, start_mcpd, stop_mcpd
from tests.e2e.gateway import start_ray

SPEC = {"command": "uvx", "args": ["mcp-server-time"], "replicas": 2}


def running_pids(mcpd: Mcpd, server: str, replicas: int, timeout: float = 120) -> set[int]:
    deadline = time.monotonic() + timeout
    while True:
        items = httpx.get(
            f"{mcpd.url}/api/v1/instances",
            params={"server": server},
            headers={"Authorization": f"Bearer {mcpd.token}"},
        ).json()["items"]
        pids = {i["pid"] for i in items if i["status"] == "RUNNING"}
        if len(pids) == replicas and len(items) == replicas:
            return pids
        assert time.monotonic() < deadline, items
        time.sleep(0.2)


def test_kill_9_leaves_no_orphans_and_restart_restores(tmp_path: Path) -> None:
    start_ray()
    env = {"RAY_ADDRESS": ray.get_runtime_context().gcs_address, "MCPD_ACTOR_HOSTS": "1"}
    data = tmp_path / "data"
    first = start_mcpd(data, env)
    headers = {"Authorization": f"Bearer {first.token}"}
    assert (
        httpx.post(
            f"{first.url}/api/v1/servers",
            headers=headers,
            json={"metadata": {"name": "clock"}, "spec": SPEC},
        ).status_code
        == 201
    )
    before = running_pids(first, "clock", 2)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    deadline = time.monotonic() + 30
    while not all(exited(pid) for pid in before):
        assert time.monotonic() < deadline, "server processes outlived mcpd"
        time.sleep(0.1)
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
    deadline = time.monotonic() + 30
    while not all(exited(pid) for pid in after):
        assert time.monotonic() < deadline, "a graceful stop left server processes"
        time.sleep(0.1)


def test_mcpd_help_names_its_settings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mcpctl.daemon", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "MCPD_PORT" in result.stdout
