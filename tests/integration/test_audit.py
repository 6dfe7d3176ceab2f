"""The audit trail's writer, store, API and summary, and the shared rate-limit buckets, on real
databases (SQLite and PostgreSQL). The MCP traffic that feeds them is in tests/e2e/test_audit.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects import sqlite
from starlette.requests import Request
from starlette.testclient import TestClient

from mcpctl.gateway.audit import (
    AuditConfig,
    AuditLog,
    _sqlite_time,
    arguments_hash,
    outcome_of,
    trace_id,
)
from mcpctl.gateway.rate_limit import RateLimitConfig, RateLimiter
from mcpctl.observability.metrics import Metrics
from mcpctl.store.database import Database
from mcpctl.store.tables import AuditEventRow
from tests.integration.test_api import create, member_client

MARKER = "secret-marker-8d1f0c"


def fake_request(path: str, user: str = "alice@example.com", **headers: str) -> Request:
    class User:
        is_authenticated = True
        email = user

    class State:
        pass

    app = type("App", (), {"state": State()})()
    app.state.context = type("Context", (), {"resource_owners": {}})()
    scope = {
        "type": "http",
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "user": User(),
        "app": app,
    }
    return Request(scope)


def call(request_id: int, name: str, **arguments: Any) -> dict[str, Any]:
    params = {"name": name, "arguments": arguments}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


OK = {"jsonrpc": "2.0", "id": 1, "result": {"content": [], "isError": False}}


def count(database: Database) -> int:
    with database.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(AuditEventRow)) or 0)


def test_outcomes_hash_and_trace_context() -> None:
    assert outcome_of(OK) == "ok"
    assert outcome_of({"id": 1, "result": {"isError": True}}) == "tool_error"
    assert outcome_of({"id": 1, "error": {"code": -32602, "message": "x"}}) == "protocol_error"
    assert outcome_of(None) == "timeout"
    # Canonical JSON: key order and spacing do not matter; the values are never kept.
    digest = hashlib.sha256(b'{"a":1,"b":"x"}').hexdigest()
    assert arguments_hash({"b": "x", "a": 1}) == digest
    assert arguments_hash({"big": 2**70}) is not None and arguments_hash(None) is None
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    header = fake_request("/mcp/projects/p", traceparent=f"00-{tid}-00f067aa0ba902b7-01")
    assert trace_id(header, call(1, "x")) == tid
    in_meta = call(1, "x")
    in_meta["params"]["_meta"] = {"traceparent": f"00-{'1' * 32}-00f067aa0ba902b7-01"}
    assert trace_id(header, in_meta) == "1" * 32
    assert trace_id(fake_request("/mcp/projects/p", traceparent="garbage"), call(1, "x")) is None


def test_a_thousand_calls_are_written_in_few_transactions_and_never_their_values(
    database: Database,
) -> None:
    metrics = Metrics()
    log = AuditLog(database, metrics, AuditConfig(flush_seconds=0.1))

    async def traffic() -> float:
        request = fake_request("/mcp/projects/dev")
        slowest = 0.0
        for i in range(1000):
            began = time.perf_counter()
            log.observed(request, "alice@example.com", call(i, "srv__echo", text=MARKER), OK, began)
            slowest = max(slowest, time.perf_counter() - began)
        await asyncio.sleep(0.3)  # the writer's turn
        await log.close()
        return slowest

    slowest = asyncio.run(traffic())
    assert count(database) == 1000
    assert metrics.audit_batches._value.get() <= 2  # 1000 rows, a batch (of 1000) per transaction
    assert slowest < 0.005, f"recording one call took {slowest * 1000:.2f} ms"
    with database.transaction() as session:
        row = session.scalars(select(AuditEventRow).limit(1)).one()
        assert (row.principal, row.endpoint, row.project, row.server, row.name) == (
            "alice@example.com",
            "projects/dev",
            "dev",
            "srv",
            "srv__echo",
        )
        assert row.args_hash == arguments_hash({"text": MARKER}) and row.outcome == "ok"
        # The marker is nowhere in the database: every column of every row, as text.
        for table in ("audit_events",):
            dump = session.execute(text(f"SELECT * FROM {table}")).all()
            assert MARKER not in repr(dump)


def test_the_request_never_waits_for_the_store(tmp_path: Any) -> None:
    """With the database locked by another writer, recording still takes microseconds; a full
    queue drops (and counts) rather than waits; the rows arrive once the lock is gone."""
    from tests.conftest import fresh_database

    database = fresh_database("sqlite", tmp_path)
    metrics = Metrics()
    log = AuditLog(database, metrics, AuditConfig(flush_seconds=0.05, queue_size=500))
    blocker = sqlite3.connect(str(tmp_path / "mcpd.db"), timeout=1)
    blocker.execute("BEGIN IMMEDIATE")  # holds the write lock

    async def traffic() -> float:
        request = fake_request("/mcp/projects/dev")
        began = time.perf_counter()
        for i in range(600):
            log.observed(request, "a@example.com", call(i, "s__t"), OK, time.perf_counter())
        spent = time.perf_counter() - began
        await asyncio.sleep(0.3)  # the writer is stuck on the lock meanwhile
        blocker.rollback()
        await asyncio.sleep(0.5)
        await log.close()
        return spent

    spent = asyncio.run(traffic())
    blocker.close()
    assert spent < 0.5, f"600 records took {spent:.3f} s with the store locked"
    assert metrics.audit_dropped.labels("queue_full")._value.get() >= 100  # the queue holds 500
    assert count(database) >= 400
    database.dispose()


def test_retention_deletes_old_rows(database: Database) -> None:
    log = AuditLog(database, Metrics(), AuditConfig(retention_days=7))
    request = fake_request("/mcp/projects/dev")
    for i in range(3):
        log.observed(request, "a@example.com", call(i, "s__t"), OK, time.perf_counter())
    asyncio.run(log.close())
    with database.transaction() as session:
        rows = session.scalars(select(AuditEventRow).order_by(AuditEventRow.id)).all()
        rows[0].at = datetime.now(UTC) - timedelta(days=8)
        rows[1].at = datetime.now(UTC) - timedelta(days=6)
    assert log.purge() == 1
    assert count(database) == 2
    assert AuditLog(database, Metrics(), AuditConfig(retention_days=0)).purge() == 0


def seed(api: TestClient) -> None:
    """Rows as the gateway writes them: alice's calls, bob's denied one."""
    log: AuditLog = api.app.state.audit  # type: ignore[attr-defined]
    alice = fake_request("/mcp/projects/p1")
    log.observed(alice, "alice@example.com", call(1, "s__echo", text="a"), OK, time.perf_counter())
    failed = {"id": 2, "result": {"isError": True}}
    log.observed(alice, "alice@example.com", call(2, "s__fail"), failed, time.perf_counter())
    bob = fake_request("/mcp/projects/p1", user="bob@example.com")
    log.denied(bob, "not_found", "not in the project", status=404)
    asyncio.run(log.flush())


def test_api_filters_exports_and_members_see_only_their_own(api: TestClient) -> None:
    seed(api)
    everything = api.get("/api/v1/audit", params={"since": "1h"}).json()
    assert len(everything["items"]) == 3 and not everything["truncated"]
    assert {i["outcome"] for i in everything["items"]} == {"ok", "tool_error", "denied"}
    denied = api.get("/api/v1/audit", params={"outcome": "denied"}).json()["items"]
    assert [(d["principal"], d["status"], d["reason"]) for d in denied] == [
        ("bob@example.com", 404, "not_found: not in the project")
    ]
    assert api.get("/api/v1/audit", params={"user": "alice@example.com"}).json()["items"]
    assert api.get("/api/v1/audit", params={"server": "s", "project": "p1"}).json()["items"]
    assert not api.get("/api/v1/audit", params={"until": "2001-01-01T00:00:00Z"}).json()["items"]
    assert api.get("/api/v1/audit", params={"since": "yesterday"}).status_code == 422
    assert api.get("/api/v1/audit", params={"outcome": "fine"}).status_code == 422
    lines = api.get("/api/v1/audit", params={"format": "jsonl"}).text.splitlines()
    assert [json.loads(line)["outcome"] for line in lines] == ["ok", "tool_error", "denied"]
    create(api, "users", {"metadata": {"name": "alice@example.com"}, "spec": {"role": "member"}})
    token = api.post("/api/v1/users/alice@example.com/tokens", json={}).json()["token"]
    alice = TestClient(api.app, headers={"Authorization": f"Bearer {token}"})
    mine = alice.get("/api/v1/audit").json()["items"]
    assert {i["principal"] for i in mine} == {"alice@example.com"} and len(mine) == 2
    assert alice.get("/api/v1/audit", params={"user": "bob@example.com"}).status_code == 422
    bob = member_client(api, "bob@example.com")
    assert [i["outcome"] for i in bob.get("/api/v1/audit").json()["items"]] == ["denied"]
    summary = alice.get("/api/v1/audit/summary").json()["rows"]
    assert {(r["name"], r["calls"], r["errors"]) for r in summary} == {
        ("s__echo", 1, 0),
        ("s__fail", 1, 1),
    }
    assert all(r["p95Ms"] is not None for r in summary)


def test_a_projects_rate_limit_is_applied_and_shown(api: TestClient) -> None:
    project = {"metadata": {"name": "limited"}, "spec": {"rateLimit": {"perMinute": 60}}}
    created = create(api, "projects", project)
    assert created["spec"]["rateLimit"] == {"perMinute": 60, "burst": 0}
    changed = {"metadata": {"name": "limited"}, "spec": {"rateLimit": {"perMinute": 5, "burst": 2}}}
    assert api.put("/api/v1/projects/limited", json=changed).headers["Mcpctl-Outcome"] == (
        "configured"
    )
    assert api.get("/api/v1/projects/limited").json()["spec"]["rateLimit"]["burst"] == 2
    api.put("/api/v1/projects/limited", json={"metadata": {"name": "limited"}, "spec": {}})
    assert "rateLimit" not in api.get("/api/v1/projects/limited").json()["spec"]


def test_two_limiters_on_one_store_share_the_bucket(database: Database) -> None:
    """Two replicas' limiters: together they admit the burst (within a chunk each), not twice
    the burst; a refused one says how long to wait."""
    config = RateLimitConfig(max_chunk=20)
    a, b = RateLimiter(database, Metrics(), config), RateLimiter(database, Metrics(), config)

    async def burst() -> tuple[int, list[float]]:
        admitted, waits = 0, []
        for i in range(300):
            wait = await (a if i % 2 else b).admit("u:alice", 60, 100)
            if wait is None:
                admitted += 1
            else:
                waits.append(wait)
        return admitted, waits

    admitted, waits = asyncio.run(burst())
    chunk = min(20, 100 // 10)
    assert 100 - 2 * chunk <= admitted <= 100 + 2 * chunk, admitted
    assert waits and all(0 < w <= 2 for w in waits)

    async def another() -> float | None:
        return await a.admit("u:bob", 60, 100)

    assert asyncio.run(another()) is None  # per principal: bob's bucket is his own


def test_times_are_kept_as_sqlalchemy_keeps_them_on_sqlite() -> None:
    """The audit writes a record's time as SQLite text itself (gateway/audit.py,
    `_sqlite_time`): the text SQLAlchemy's DATETIME makes of `datetime.fromtimestamp(at,
    UTC)`, microseconds rounded alike (half to even, up to the next second)."""
    process = sqlite.DATETIME().bind_processor(sqlite.dialect())
    assert process is not None
    rng = random.Random(7)
    moments = [rng.uniform(0, 4e9) for _ in range(20_000)]
    moments += [1.0000005, 1.0000015, 1765000000.9999995, 1765000000.0000005, 0.0, 59.9999999]
    moments += [rng.randrange(0, 4 * 10**9) + rng.randrange(0, 10**6) / 1e6 for _ in range(5000)]
    seconds: dict[int, str] = {}
    for at in moments:
        assert _sqlite_time(at, seconds) == process(datetime.fromtimestamp(at, UTC)), at
