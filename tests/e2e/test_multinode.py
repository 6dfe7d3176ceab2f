"""Past one machine: a 3-node Ray cluster (tests/e2e/multinode.py, in a process of its own)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_hosts_spread_over_nodes_and_a_lost_node_is_replaced(tmp_path: Path) -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "tests.e2e.multinode", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=420,
        cwd=Path(__file__).parents[2],
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    assert all(report["answered"])
    assert len(set(report["host_nodes"])) == 3  # one host on each node
    assert report["lost_servers"]  # the removed node ran some of them
    # Its hosts were restarted by Ray on the nodes left, and every server answers again.
    assert report["removed_node"] not in report["host_nodes_after"]
    assert all(report["answered_after"])
    print(f"servers of the lost node answered again after {report['recovery_seconds']} s")
