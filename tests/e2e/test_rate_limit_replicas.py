"""Rate limits shared by two mcpd gateway replicas on one Ray and one PostgreSQL (MCPD_SHARED):
a principal's calls through both replicas together stay within one budget (within a leased
chunk per replica), with bursts; 429 + Retry-After + a JSON-RPC error; another principal has a
budget of its own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import ray
from cryptography.fernet import Fernet

from mcpctl.actors.controller import RAY_NAMESPACE, controller_name
from tests.e2e.conftest import Mcpd, start_mcpd, stop_mcpd
from tests.e2e.gateway import start_ray
from tests.helpers.jsonrpc import ACCEPT, INIT
from tests.helpers.mcpd import add_member, bearer
from tests.helpers.postgres import own_database

DEPLOYMENT = "rate-limit-test"
PER_MINUTE, BURST = 60, 40
CHUNK = min(100, BURST // 10)  # MCPD_RATE_LIMIT_CHUNK (100) and a tenth of the burst


@dataclass
class Pair:
    a: Mcpd
    b: Mcpd
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    start_ray()
    root = tmp_path_factory.mktemp("rate-limit")
    env = {
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "MCPD_SHARED": "true",
        "MCPD_DEPLOYMENT": DEPLOYMENT,
        "MCPD_ACTOR_HOSTS": "1",
        "MCPD_DATABASE_URL": own_database("mcpctl_rate_limit"),
        "MCPD_SECRET_KEY": Fernet.generate_key().decode(),
        "MCPD_RATE_LIMIT_PER_MINUTE": str(PER_MINUTE),
        "MCPD_RATE_LIMIT_BURST": str(BURST),
    }
    a = start_mcpd(root / "a", env)
    b = start_mcpd(root / "b", env)
    admin = httpx.Client(base_url=a.url, headers=bearer(a.token))
    tokens = {user: add_member(admin, user) for user in ("alice", "bob")}
    # A project without servers: its answers cost nothing, so only the limit is measured.
    members = ["alice@example.com", "bob@example.com"]
    body = {"metadata": {"name": "team"}, "spec": {"members": members}}
    assert admin.post("/api/v1/projects", json=body).status_code == 201
    yield Pair(a, b, tokens)
    for mcpd in (a, b):
        stop_mcpd(mcpd)
    controller = ray.get_actor(controller_name(DEPLOYMENT), namespace=RAY_NAMESPACE)
    ray.get(controller.shutdown.remote())  # shared: no replica stops the deployment
    ray.kill(controller, no_restart=True)


def clients(pair: Pair, user: str) -> tuple[httpx.Client, httpx.Client]:
    """A session begun on A, used through both replicas."""
    headers = {**bearer(pair.tokens[user]), **ACCEPT}
    a = httpx.Client(base_url=pair.a.url, headers=headers, timeout=30)
    begun = a.post("/mcp/projects/team", json=INIT)
    assert begun.status_code == 200, begun.text
    a.headers["Mcp-Session-Id"] = begun.headers["Mcp-Session-Id"]
    b = httpx.Client(base_url=pair.b.url, headers=dict(a.headers), timeout=30)
    return a, b


def tools_list(request_id: int) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/list", "params": {}}


def test_a_principals_limit_holds_across_both_replicas(pair: Pair) -> None:
    a, b = clients(pair, "alice")  # initialize: one token spent
    began = time.monotonic()
    statuses: dict[str, list[int]] = {"a": [], "b": []}
    refused: list[httpx.Response] = []
    for i in range(1, 121):
        name, replica = ("a", a) if i % 2 else ("b", b)
        answer = replica.post("/mcp/projects/team", json=tools_list(i))
        statuses[name].append(answer.status_code)
        if answer.status_code == 429:
            refused.append(answer)
    elapsed = time.monotonic() - began
    admitted = 1 + sum(s == 200 for s in statuses["a"] + statuses["b"])
    refill = elapsed * PER_MINUTE / 60
    print(f"admitted {admitted} of 121 in {elapsed:.2f} s (burst {BURST}, chunk {CHUNK})")
    # Never more than the bucket hands out, plus a chunk per replica; at most a chunk per
    # replica fewer (tokens leased and left unused).
    assert BURST - 2 * CHUNK <= admitted <= BURST + refill + 2 * CHUNK
    assert 429 in statuses["a"] and 429 in statuses["b"]  # both replicas refuse
    assert set(statuses["a"] + statuses["b"]) == {200, 429}
    first = refused[0]
    assert 1 <= int(first.headers["Retry-After"]) <= 2
    error = first.json()["error"]
    assert error["code"] == -32029 and error["data"]["scope"] == "principal"
    # Bob's budget is his own.
    _, bob_b = clients(pair, "bob")
    assert bob_b.post("/mcp/projects/team", json=tools_list(1)).status_code == 200
    # After Retry-After, alice gets through again (the bucket refilled at 1/s).
    time.sleep(int(first.headers["Retry-After"]) + 0.5)
    assert b.post("/mcp/projects/team", json=tools_list(999)).status_code == 200
    metrics = httpx.get(
        f"{pair.a.url}/metrics", headers={"Authorization": f"Bearer {pair.a.token}"}
    )
    assert 'mcpctl_rate_limited_total{scope="principal",target="projects/team"}' in metrics.text
    assert "alice" not in metrics.text  # principals are never labels
