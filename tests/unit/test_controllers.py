"""Pure runtime logic: placement, reconcile plans, workload rendering, status (back-off and
crash loops: test_backoff.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from mcpctl.controllers.placement import host_for, pool_size
from mcpctl.controllers.reconcile import plan
from mcpctl.controllers.status import IllegalTransition, transition
from mcpctl.controllers.workload import WorkloadError, command_line, render, spec_hash, with_port
from mcpctl.models.instance import InstanceStatus as S
from mcpctl.models.server import ServerSpec


def test_placement_is_stable_and_spreads() -> None:
    names = [f"server-{i}" for i in range(400)]
    four = {n: host_for(n, 4) for n in names}
    assert four == {n: host_for(n, 4) for n in names}
    counts = Counter(four.values())
    assert min(counts.values()) > 60  # roughly 100 each
    five = {n: host_for(n, 5) for n in names}
    moved = [n for n in names if four[n] != five[n]]
    assert all(five[n] == 4 for n in moved)  # only moves onto the new host
    assert 40 < len(moved) < 130


def test_pool_size() -> None:
    assert pool_size(cpus=2, servers=200) == 2
    assert pool_size(cpus=8, servers=3) == 3
    assert pool_size(cpus=1, servers=0) == 1
    assert pool_size(cpus=16, servers=200, configured=4) == 4


def test_reconcile_plan() -> None:
    assert plan(3, "h", {}).start == (0, 1, 2)
    scaled_down = plan(1, "h", {0: "h", 1: "h", 2: "h"})
    assert (scaled_down.start, scaled_down.stop, scaled_down.roll) == ((), (1, 2), ())
    rolled = plan(2, "new", {0: "old", 1: "new"})
    assert (rolled.start, rolled.stop, rolled.roll) == ((), (), (0,))
    assert plan(2, "h", {0: "h", 1: "h"}).empty


def test_command_lines() -> None:
    node = ServerSpec(
        package="@modelcontextprotocol/server-everything", runtime="node", args=["stdio"]
    )
    assert command_line(node) == ("npx", "-y", "@modelcontextprotocol/server-everything", "stdio")
    python = ServerSpec(package="mcp-server-time", runtime="python")
    assert command_line(python) == ("uvx", "mcp-server-time")
    assert command_line(ServerSpec(command="python", args=["-m", "x"])) == ("python", "-m", "x")
    assert command_line(ServerSpec(image="img", args=["--stdio"])) == ("--stdio",)
    overridden = render("x", 0, ServerSpec(image="img", command="serve", args=["-v"]), {})
    assert (overridden.entrypoint, overridden.argv) == (("serve",), ("-v",))
    assert with_port(("srv", "--port", "{port}", "--bind=:${PORT}"), 9000) == (
        "srv",
        "--port",
        "9000",
        "--bind=:9000",
    )


def test_render_resolves_secrets_and_names_missing_ones() -> None:
    spec = ServerSpec.model_validate(
        {
            "command": "srv",
            "env": [
                {"name": "A", "value": "1"},
                {"name": "T", "secretRef": {"name": "gh", "key": "token"}},
            ],
        }
    )
    workload = render("srv", 1, spec, {"gh": {"token": "s3cret"}})
    assert workload.env == {"A": "1"}
    assert workload.secret_values == {"T": "s3cret"}
    assert workload.secret_refs == {"T": ("gh", "token")}
    assert "s3cret" not in repr(workload)
    unresolved = render("srv", 1, spec, None)
    assert (unresolved.secret_values, unresolved.secret_refs) == ({}, {"T": ("gh", "token")})
    with pytest.raises(WorkloadError, match="secret 'gh' not found"):
        render("srv", 0, spec, {})
    with pytest.raises(WorkloadError, match="has no key 'token'"):
        render("srv", 0, spec, {"gh": {}})


def test_spec_hash_ignores_replicas_only() -> None:
    base = ServerSpec(command="srv")
    assert spec_hash(base) == spec_hash(base.model_copy(update={"replicas": 5}))
    assert spec_hash(base) != spec_hash(ServerSpec(command="srv", args=["x"]))


def test_status_machine() -> None:
    assert transition(S.PENDING, S.STARTING) is S.STARTING
    assert transition(S.RUNNING, S.STARTING) is S.STARTING
    assert transition(S.ERROR, S.STARTING) is S.STARTING
    with pytest.raises(IllegalTransition):
        transition(S.PENDING, S.RUNNING)
    with pytest.raises(IllegalTransition):
        transition(S.STOPPED, S.RUNNING)
