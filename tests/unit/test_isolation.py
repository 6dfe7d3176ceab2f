"""Isolated backends as data: whose a request is, which backend serves it, what a new spec
retires and rolls, what idles out (controllers/isolation.py; the supervisor carries it out)."""

from __future__ import annotations

import pytest

from mcpctl.controllers.isolation import (
    Refuse,
    Retirement,
    Serve,
    backend_for,
    on_spec,
    owner_key,
    reap,
    stale,
)
from mcpctl.models.server import Isolation, ServerSpec


def spec(isolation: str = "principal", replicas: int = 1, max_instances: int = 50) -> ServerSpec:
    return ServerSpec(
        command="serve", isolation=isolation, replicas=replicas, max_instances=max_instances
    )


@pytest.mark.parametrize(
    ("isolation", "session", "expected"),
    [
        (Isolation.SHARED, "s1", None),
        (Isolation.PRINCIPAL, "s1", "principal:alice"),
        (Isolation.PRINCIPAL, None, "principal:alice"),
        (Isolation.SESSION, "s1", "session:s1"),
        (Isolation.SESSION, None, "principal:alice"),  # a request without a session (2026-07-28)
    ],
)
def test_owner_key(isolation: Isolation, session: str | None, expected: str | None) -> None:
    assert owner_key(isolation, "alice", session) == expected


@pytest.mark.parametrize(
    ("server", "owners", "running", "expected"),
    [
        pytest.param(spec(), {"a": 1}, {0, 1}, Serve(1), id="the owner's backend"),
        pytest.param(spec(), {"a": 1}, {0}, Serve(1, start=True), id="the owner's backend went"),
        pytest.param(spec(), {"b": 0, "c": 2}, {0, 2}, Serve(1, start=True), id="new: first gap"),
        pytest.param(spec(), {}, set(), Serve(0, start=True), id="new: the first"),
        pytest.param(
            spec(replicas=0),
            {},
            set(),
            Refuse("server 'mem' is scaled to 0"),
            id="replicas 0",
        ),
        pytest.param(
            spec(replicas=0), {"a": 1}, {1}, Serve(1), id="replicas 0, until the spec retires it"
        ),
        pytest.param(
            spec(max_instances=2),
            {"b": 0, "c": 1},
            {0, 1},
            Refuse(
                "server 'mem' runs its limit of 2 isolated instances (maxInstances); "
                "try again when one has been idle"
            ),
            id="at maxInstances",
        ),
    ],
)
def test_backend_for(
    server: ServerSpec, owners: dict[str, int], running: set[int], expected: Serve | Refuse
) -> None:
    assert backend_for("mem", server, "a", owners, running) == expected


@pytest.mark.parametrize(
    ("server", "owners", "running", "expected"),
    [
        pytest.param(spec("shared"), {}, [0, 1], Retirement({}, (), True), id="shared"),
        pytest.param(
            spec("shared"),
            {"a": 2, "b": 0},
            [0, 2],
            Retirement({}, (0, 2), forget=True),
            id="isolated, now shared: the owners' backends go",
        ),
        pytest.param(
            spec(),
            {"a": 0, "b": 1},
            [0, 1],
            Retirement({"a": 0, "b": 1}, (), forget=False),
            id="isolated: owned backends stay",
        ),
        pytest.param(
            spec("session"),
            {"a": 1},
            [0, 1, 2],
            Retirement({"a": 1}, (0, 2), forget=False),
            id="isolated: unowned go, rows kept while an owned one stays",
        ),
        pytest.param(
            spec(),
            {},
            [0, 1],
            Retirement({}, (0, 1), forget=True),
            id="shared, now isolated: its replicas go",
        ),
        pytest.param(
            spec(replicas=0),
            {"a": 0, "b": 1},
            [0, 1],
            Retirement({}, (0, 1), forget=True),
            id="replicas 0: every backend goes",
        ),
    ],
)
def test_on_spec(
    server: ServerSpec, owners: dict[str, int], running: list[int], expected: Retirement
) -> None:
    assert on_spec(server, owners, running) == expected


def test_stale_backends_roll() -> None:
    assert stale({0: "old", 1: None, 2: "new"}, "new") == (0,)  # 1 has not started yet
    assert stale({0: "new"}, "new") == ()


@pytest.mark.parametrize(
    ("idle_for", "expected"),
    [
        pytest.param({0: 10.0, 1: 20.0}, Retirement({"a": 0, "b": 1}), id="busy"),
        pytest.param({0: 300.0, 1: 20.0}, Retirement({"b": 1}, (0,)), id="one idle"),
        pytest.param({0: 301.0, 1: 999.0}, Retirement({}, (0, 1)), id="both idle"),
        pytest.param({1: 999.0, 7: 999.0}, Retirement({"a": 0}, (1,)), id="unowned ones stay"),
    ],
)
def test_reap(idle_for: dict[int, float], expected: Retirement) -> None:
    assert reap({"a": 0, "b": 1}, idle_for, 300) == expected
