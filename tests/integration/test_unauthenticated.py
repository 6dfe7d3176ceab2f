"""Requests without a valid token are budgeted per source address (issue 18, "Also").

Before: every request with a bad or missing token cost a token lookup and an audit row, with no
limit (rate limits apply after authentication), which made audit floods cheap. Now each source
address has a budget of such requests; past it, 429 with Retry-After at once: no lookup, no
audit row, counted. A good token from the same address is still served from the cache.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from mcpctl.gateway.app import build_app
from mcpctl.gateway.context import GatewayContext
from mcpctl.gateway.unauthenticated import MAX_ADDRESSES, SourceBudget, SourceLimits
from mcpctl.store import tokens
from tests.conftest import ADMIN_TOKEN

BURST = 4
INIT = {"jsonrpc": "2.0", "id": 1, "method": "ping"}


@pytest.fixture
def gateway(context: GatewayContext) -> Iterator[TestClient]:
    app = build_app(context, source_limits=SourceLimits(per_second=0.01, burst=BURST))
    with TestClient(app) as client:
        yield client


def lookups_of(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = tokens.authenticate

    def counted(session, token, now=None):  # type: ignore[no-untyped-def]
        seen.append(token)
        return real(session, token, now)

    monkeypatch.setattr(tokens, "authenticate", counted)
    return seen


def test_bad_tokens_past_the_budget_are_429_without_a_lookup(
    gateway: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert gateway.get("/api/v1/whoami", headers=good).status_code == 200  # cached now
    lookups = lookups_of(monkeypatch)
    statuses = []
    for n in range(BURST + 6):
        bad = {"Authorization": f"Bearer mcp_bad-{n}"}
        answer = gateway.get("/api/v1/servers", headers=bad)
        statuses.append(answer.status_code)
        if answer.status_code == 429:
            assert int(answer.headers["retry-after"]) >= 1
            assert "without a valid token" in answer.json()["message"]
    assert statuses == [401] * BURST + [429] * 6
    assert len(lookups) == BURST  # none past the budget
    # Missing tokens spend the same budget, on the API and the MCP endpoints.
    assert gateway.get("/api/v1/servers").status_code == 429
    assert gateway.post("/mcp/servers/x", json=INIT).status_code == 429
    # The address's good token still works (from the cache).
    assert gateway.get("/api/v1/whoami", headers=good).status_code == 200
    metrics = gateway.get("/metrics").text
    assert 'mcpctl_auth_failures_total{reason="source_rate_limited"} 8.0' in metrics


def test_the_budget_is_per_address_and_refills() -> None:
    budget = SourceBudget(SourceLimits(per_second=1000.0, burst=2))
    for _ in range(2):
        assert budget.exhausted("10.0.0.1") is None
        budget.spend("10.0.0.1")
    assert budget.exhausted("10.0.0.1") is not None
    assert budget.exhausted("10.0.0.2") is None  # another address has its own
    slow = SourceBudget(SourceLimits(per_second=0.5, burst=1))
    slow.spend("a")
    wait = slow.exhausted("a")
    assert wait is not None and 1.9 < wait <= 2.0


def test_the_addresses_remembered_are_bounded() -> None:
    budget = SourceBudget(SourceLimits(per_second=1.0, burst=1))
    for n in range(MAX_ADDRESSES + 500):
        budget.spend(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}")
    assert len(budget._buckets) == MAX_ADDRESSES


def test_no_budget_when_turned_off(context: GatewayContext) -> None:
    app = build_app(context, source_limits=SourceLimits(per_second=0, burst=1))
    with TestClient(app) as client:
        statuses = {client.get("/api/v1/servers").status_code for _ in range(20)}
    assert statuses == {401}
