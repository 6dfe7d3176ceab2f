"""The audit trail and a project's rate limit on a real mcpd (PostgreSQL store) in front of real
MCP servers (the official SDK's MCPServer and tests/servers/misbehaving.py, `command: python`):
two tenants, every outcome, argument values never stored, batched writes, the API, the CLI."""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
from sqlalchemy import create_engine, make_url, text

from mcpctl.store.tables import Base
from tests.conftest import postgres_url
from tests.e2e.conftest import Mcpd, Run, start_mcpd, stop_mcpd
from tests.e2e.gateway import start_ray

SERVERS = Path(__file__).parents[1] / "servers"
MCP = {"Accept": "application/json, text/event-stream"}
MARKER = "never-stored-7f3a9c"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
INIT = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "audit-test", "version": "1"},
    },
}


@dataclass
class World:
    mcpd: Mcpd
    tokens: dict[str, str]
    database_url: str

    def api(self, user: str = "admin") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        return httpx.Client(base_url=self.mcpd.url, headers=headers, timeout=60)

    def metric(self, name: str, **labels: str) -> float:
        body = self.api().get("/metrics").text
        total = 0.0
        for line in body.splitlines():
            if re.match(rf"{name}(\{{| )", line) and all(
                f'{k}="{v}"' in line for k, v in labels.items()
            ):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def audit(self, as_user: str = "admin", **params: str) -> list[dict[str, Any]]:
        answer = self.api(as_user).get("/api/v1/audit", params={"since": "1h", **params})
        assert answer.status_code == 200, answer.text
        return list(answer.json()["items"])


def own_database(name: str) -> str:
    url = make_url(postgres_url())
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        connection.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def until(predicate: Any, timeout: float = 120, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    start_ray()
    root = tmp_path_factory.mktemp("audit")
    state = root / "state"
    state.mkdir()
    database_url = own_database("mcpctl_audit")
    env = {
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "MCPD_DATABASE_URL": database_url,
        "MCPD_REQUEST_TIMEOUT": "3",
        "MCPD_ACTOR_HOSTS": "1",
    }
    daemon = start_mcpd(root / "data", env)
    tokens = {"admin": daemon.token}
    world = World(daemon, tokens, database_url)
    api = world.api()
    servers = {
        "audited": [str(SERVERS / "audited.py")],
        "misbehaving": [str(SERVERS / "misbehaving.py"), str(state)],
    }
    for name, args in servers.items():
        spec = {"command": sys.executable, "args": args}
        created = api.post("/api/v1/servers", json={"metadata": {"name": name}, "spec": spec})
        assert created.status_code == 201, created.text
    for user in ("alice", "bob"):
        email = f"{user}@example.com"
        api.post("/api/v1/users", json={"metadata": {"name": email}, "spec": {"role": "member"}})
        tokens[user] = api.post(f"/api/v1/users/{email}/tokens", json={}).json()["token"]
    projects = {
        "p-alice": {"servers": ["audited", "misbehaving"], "members": ["alice@example.com"]},
        "p-bob": {"servers": ["audited"], "members": ["bob@example.com"]},
        "limited": {
            "servers": ["audited"],
            "members": ["alice@example.com"],
            "rateLimit": {"perMinute": 60, "burst": 5},
        },
    }
    for name, spec in projects.items():
        created = api.post("/api/v1/projects", json={"metadata": {"name": name}, "spec": spec})
        assert created.status_code == 201, created.text
    for name in servers:

        def running(server: str = name) -> bool:
            items = api.get("/api/v1/instances", params={"server": server}).json()["items"]
            return any(i["status"] == "RUNNING" for i in items)

        until(running, what=f"{name} never ran")
    yield world
    stop_mcpd(daemon)


@pytest.fixture(scope="module")
def mcpd(world: World) -> Mcpd:
    """The CLI's `run` fixture talks to this module's mcpd."""
    return world.mcpd


def answer_of(response: httpx.Response) -> dict[str, Any]:
    body = response.text
    if "data: " in body:
        body = body.rsplit("data: ", 1)[-1]
    return dict(json.loads(body))


class Session:
    def __init__(self, world: World, user: str, path: str) -> None:
        headers = {"Authorization": f"Bearer {world.tokens[user]}", **MCP}
        self.http = httpx.Client(base_url=world.mcpd.url, headers=headers, timeout=60)
        self.path = path
        self.opened = self.http.post(path, json=INIT)
        if self.opened.status_code == 200:
            self.http.headers["Mcp-Session-Id"] = self.opened.headers["Mcp-Session-Id"]
        self.ids = iter(range(1, 1 << 30))

    def request(self, method: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": params}
        return self.http.post(self.path, json=body, headers=headers or {})

    def call(self, tool: str, headers: dict[str, str] | None = None, **arguments: Any) -> Any:
        return self.request("tools/call", headers, name=tool, arguments=arguments)


def test_every_outcome_two_tenants_and_no_argument_values(world: World) -> None:
    alice = Session(world, "alice", "/mcp/projects/p-alice")
    traced = {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}
    echoed = answer_of(alice.call("audited__echo", traced, text=MARKER))
    assert MARKER in json.dumps(echoed)  # the server got it; the audit trail must not keep it
    assert answer_of(alice.call("audited__fail", text="x"))["result"]["isError"] is True
    assert "error" in answer_of(alice.request("prompts/get", name="misbehaving__again"))
    hung = answer_of(alice.call("misbehaving__hang"))
    assert "MCPD_REQUEST_TIMEOUT" in hung["error"]["message"]
    admin = Session(world, "admin", "/mcp/servers/misbehaving")
    assert "result" in answer_of(admin.request("resources/read", uri="mem://x"))
    # Bob: alice's project is hidden from him (404), servers are for admins (403).
    assert Session(world, "bob", "/mcp/projects/p-alice").opened.status_code == 404
    assert Session(world, "bob", "/mcp/servers/audited").opened.status_code == 403
    # The admin may enter p-alice, but not with alice's session.
    hijack = httpx.post(
        f"{world.mcpd.url}/mcp/projects/p-alice",
        json={"jsonrpc": "2.0", "id": 9, "method": "tools/list"},
        headers={
            "Authorization": f"Bearer {world.tokens['admin']}",
            "Mcp-Session-Id": alice.http.headers["Mcp-Session-Id"],
            **MCP,
        },
    )
    assert hijack.status_code == 404
    anonymous = httpx.post(f"{world.mcpd.url}/mcp/projects/p-bob", json=INIT, headers=MCP)
    assert anonymous.status_code == 401
    bad = {"Authorization": "Bearer mcp_not-a-token", **MCP}
    assert httpx.post(f"{world.mcpd.url}/mcp/projects/p-bob", json=INIT, headers=bad).is_error

    rows = until(
        lambda: len(world.audit(project="p-alice")) >= 5 and world.audit(project="p-alice"),
        30,
        str(world.audit())
        + "\n".join(
            line for line in world.api().get("/metrics").text.splitlines() if "audit" in line
        ),
    )
    mine = [r for r in rows if r["principal"] == "alice@example.com"]
    by_name = {r["name"]: r for r in mine}
    assert by_name["audited__echo"]["outcome"] == "ok"
    assert by_name["audited__fail"]["outcome"] == "tool_error"
    assert by_name["misbehaving__again"]["outcome"] == "protocol_error"
    assert by_name["misbehaving__hang"]["outcome"] == "timeout"
    ok = by_name["audited__echo"]
    canonical = json.dumps({"text": MARKER}, separators=(",", ":")).encode()
    assert ok["argsHash"] == hashlib.sha256(canonical).hexdigest()
    assert (ok["server"], ok["endpoint"], ok["traceId"], ok["requestId"]) == (
        "audited",
        "projects/p-alice",
        TRACE,
        "1",
    )
    assert by_name["misbehaving__hang"]["durationMs"] >= 2900
    reads = [r for r in world.audit(outcome="ok") if r["method"] == "resources/read"]
    assert reads and reads[0]["server"] == "misbehaving" and reads[0]["name"] == "mem://x"

    # Bob's refusals are his; alice sees only her own rows, bob only his.
    denied = until(
        lambda: len(world.audit(outcome="denied")) >= 5 and world.audit(outcome="denied")
    )
    bobs = {
        (r["status"], r["reason"].split(":")[0]) for r in denied if r["principal"].startswith("bob")
    }
    assert bobs == {(404, "not_found"), (403, "forbidden")}
    strangers = {
        (r["principal"], r["status"]) for r in denied if not r["principal"].endswith(".com")
    }
    assert ("-", 401) in strangers
    hijacks = [r for r in denied if r["reason"] == "forbidden: another principal's session"]
    assert hijacks and hijacks[0]["endpoint"] == "projects/p-alice" and hijacks[0]["status"] == 404
    assert {r["principal"] for r in world.audit("alice")} == {"alice@example.com"}
    assert {r["principal"] for r in world.audit("bob")} == {"bob@example.com"}
    assert world.api("alice").get("/api/v1/audit", params={"user": "bob@example.com"}).is_error
    assert world.metric("mcpctl_mcp_denied_total", reason="not_found") >= 1
    assert world.metric("mcpctl_mcp_denied_total", reason="unauthenticated") >= 1
    assert world.metric("mcpctl_auth_failures_total") >= 1

    # The marker is nowhere in the store: every row of every table, as text.
    engine = create_engine(world.database_url)
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            dump = repr(connection.execute(table.select()).all())
            assert MARKER not in dump, table.name
    engine.dispose()
    jsonl = world.api().get("/api/v1/audit", params={"format": "jsonl", "since": "1h"})
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert len(lines) == len(world.audit()) and lines[0]["at"] <= lines[-1]["at"]


def test_a_thousand_calls_are_written_in_a_few_transactions(world: World) -> None:
    alice = Session(world, "alice", "/mcp/projects/p-alice")
    before = world.metric("mcpctl_audit_batches_total")
    rows_before = len(world.audit(user="alice@example.com", limit="10000"))
    began = time.monotonic()
    for i in range(1000):
        assert alice.call("misbehaving__echo", text=str(i)).status_code == 200
    spent = time.monotonic() - began

    def written() -> bool:
        rows = world.audit(user="alice@example.com", limit="10000")
        return len(rows) >= rows_before + 1000

    until(written, 30, "the 1000 calls were not all written")
    batches = world.metric("mcpctl_audit_batches_total") - before
    print(f"1000 calls in {spent:.1f} s written in {batches:.0f} transactions")
    # A transaction per flush (every 0.5 s, or per 1000 rows), never one per call.
    assert 1 <= batches <= spent / 0.5 + 3, (batches, spent)
    assert world.metric("mcpctl_audit_dropped_total") == 0


def test_cli_table_json_and_summary(world: World, run: Run) -> None:
    Session(world, "alice", "/mcp/projects/p-alice").call("audited__echo", text="cli")
    until(lambda: world.audit(server="audited"))
    out, _ = run("audit", "--since", "1h", "--project", "p-alice", "--server", "audited")
    assert out.split()[:7] == ["TIME", "USER", "ENDPOINT", "SERVER", "NAME", "OUTCOME", "MS"]
    assert "alice@example.com" in out and "audited__echo" in out and "tool_error" in out
    out, _ = run("audit", "--project", "p-alice", "--outcome", "timeout", "-o", "json")
    items = json.loads(out)["items"]
    assert items and {i["outcome"] for i in items} == {"timeout"}
    out, _ = run("audit", "--summary", "--project", "p-alice")
    assert out.split()[:7] == ["USER", "SERVER", "NAME", "CALLS", "ERRORS", "DENIED", "P95"]
    line = next(row for row in out.splitlines() if "audited__fail" in row)
    assert line.split()[3:5] == ["1", "1"]  # one call, one error
    summary = json.loads(run("audit", "--summary", "-o", "json")[0])["rows"]
    assert any(r["name"] == "misbehaving__echo" and r["calls"] >= 1000 for r in summary)
    out, _ = run("--token", world.tokens["bob"], "audit", "-o", "json")
    assert {i["principal"] for i in json.loads(out)["items"]} == {"bob@example.com"}
    out, _ = run("audit", "-o", "jsonl", "--outcome", "denied")
    assert all(json.loads(line)["outcome"] == "denied" for line in out.splitlines())
    # Requests without a token are one row per source address with how many they were.
    for _ in range(3):
        httpx.post(f"{world.mcpd.url}/mcp/projects/p-cli-anon", json={}, headers=MCP)
    until(lambda: any(e["project"] == "p-cli-anon" for e in world.audit(outcome="denied")))
    out, _ = run("audit", "--project", "p-cli-anon", "-o", "wide")
    assert "SOURCE" in out.splitlines()[0]
    assert "denied (401) x3" in out and "127.0.0.1" in out, out


def test_a_projects_rate_limit_answers_429_with_retry_after(world: World) -> None:
    alice = Session(world, "alice", "/mcp/projects/limited")  # the first of 5 (the burst)
    answers = [alice.call("audited__echo", text=str(i)) for i in range(6)]
    assert [a.status_code for a in answers] == [200] * 4 + [429] * 2
    refused = answers[4]
    retry = int(refused.headers["Retry-After"])
    assert 1 <= retry <= 2
    body = refused.json()  # for clients that read only the body: a JSON-RPC error
    assert body["jsonrpc"] == "2.0" and body["id"] == 5 and body["error"]["code"] == -32029
    assert body["error"]["data"] == {"retryAfter": retry, "scope": "project"}
    scope = {"scope": "project", "target": "projects/limited"}
    assert world.metric("mcpctl_rate_limited_total", **scope) == 2
    time.sleep(retry)
    assert alice.call("audited__echo", text="again").status_code == 200  # refilled: 1/s
    # Bob is not in the project; another project of alice's has no limit.
    other = Session(world, "alice", "/mcp/projects/p-alice")
    assert all(other.call("audited__echo", text="x").status_code == 200 for _ in range(8))
    limited = until(lambda: world.audit(project="limited", outcome="denied"), 10)
    assert limited[0]["status"] == 429 and limited[0]["reason"].startswith("rate_limited")
    assert limited[0]["name"] == "audited__echo" and limited[0]["principal"] == "alice@example.com"
