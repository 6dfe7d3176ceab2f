"""Placement as data: the plan that takes servers from the hosts they run on to the hosts
their names hash to (controllers/placement.py; the controller actor only carries it out)."""

from __future__ import annotations

import pytest

from mcpctl.controllers.placement import Move, Place, Placement, host_for, plan

# Where these names hash, pinned: a change of the hash would move every server of a deployment.
#   time [0, 1, 1, 1]  echo [0, 1, 1, 3]  memory [0, 0, 2, 3]  fetch, git [0, 0, 0, 0]
SPEC = {"command": "serve"}
CASES = [
    pytest.param({}, {}, 2, Placement(), id="nothing"),
    pytest.param({"time": SPEC}, {}, 2, Placement(ensure=(Place("time", 1),)), id="new server"),
    pytest.param({}, {"time": 1}, 2, Placement(remove=(Place("time", 1),)), id="removed server"),
    pytest.param(
        {"time": SPEC},
        {"time": 1},
        3,
        Placement(ensure=(Place("time", 1),)),
        id="pool grows, host index unchanged: ensured where it runs",
    ),
    pytest.param(
        {"memory": SPEC, "time": SPEC},
        {"memory": 0, "time": 1},
        3,
        Placement(move=(Move("memory", 0, 2),), ensure=(Place("time", 1),)),
        id="pool grows: a server moves onto the new host",
    ),
    pytest.param(
        {"memory": SPEC, "echo": SPEC},
        {"memory": 3, "echo": 3},
        2,
        Placement(move=(Move("memory", 3, 0), Move("echo", 3, 1))),
        id="pool shrinks: servers of the hosts gone move",
    ),
    pytest.param(
        {"time": {**SPEC, "replicas": 0}},
        {"time": 1},
        2,
        Placement(ensure=(Place("time", 1),)),
        id="replicas 0: still placed (its supervisor stops the replicas)",
    ),
    pytest.param(
        {"echo": SPEC, "fetch": SPEC, "memory": SPEC},
        {"memory": 2, "fetch": 0, "git": 0},
        4,
        Placement(
            remove=(Place("git", 0),),
            move=(Move("memory", 2, 3),),
            ensure=(Place("echo", 3), Place("fetch", 0)),
        ),
        id="all at once",
    ),
]


@pytest.mark.parametrize(("desired", "placed", "hosts", "expected"), CASES)
def test_plan(
    desired: dict[str, dict[str, object]],
    placed: dict[str, int],
    hosts: int,
    expected: Placement,
) -> None:
    placement = plan(desired, placed, hosts)
    assert placement == expected
    after = placement.applied_to(placed)
    assert after == {server: host_for(server, hosts) for server in desired}
    assert plan(desired, after, hosts).remove == plan(desired, after, hosts).move == ()


@pytest.mark.parametrize(("desired", "placed", "hosts", "expected"), CASES)
def test_one_server_is_planned_as_in_a_full_sync(
    desired: dict[str, dict[str, object]],
    placed: dict[str, int],
    hosts: int,
    expected: Placement,
) -> None:
    """Controller.apply plans its one server alone; the steps are the full sync's for it."""
    for server in {*desired, *placed}:
        alone = plan(
            {server} & set(desired), {server: placed[server]} if server in placed else {}, hosts
        )
        assert alone.remove == tuple(p for p in expected.remove if p.server == server)
        assert alone.move == tuple(m for m in expected.move if m.server == server)
        assert alone.ensure == tuple(p for p in expected.ensure if p.server == server)
        assert alone.applied_to(placed) == {
            **{s: h for s, h in placed.items() if s != server},
            **({server: host_for(server, hosts)} if server in desired else {}),
        }


def test_no_hosts_to_place_on() -> None:
    assert plan({}, {}, 0) == Placement()
    with pytest.raises(ValueError, match="no hosts"):
        plan({"time": SPEC}, {}, 0)
