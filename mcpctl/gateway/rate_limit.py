"""Rate limits: per principal (MCPD_RATE_LIMIT_PER_MINUTE / _BURST) and per project (its
`rateLimit`), in calls per minute with bursts, shared by every gateway replica.

Each limit is a token bucket (`burst` tokens, refilled at `perMinute / 60` per second) kept in
the store (`rate_limit_buckets`), so all replicas draw from the same one. The hot path does not
go to the store per call: a replica *leases* tokens in chunks (one row lock and update per
lease) and spends them locally; a chunk grows while it is used up within its lease (doubling up
to `max_chunk`) and shrinks when tokens are left over, and what is left unused after
`lease_seconds` is dropped (it never accumulates). So the replicas together never admit more
than the bucket hands out, plus at most one chunk per replica leased just before the bucket ran
dry; a bucket found empty makes the replica refuse locally until it would have refilled.

Requests and notifications alike take a token (a notification also costs a backend a write);
answers to a server's questions do not.

An exceeded limit answers HTTP 429 with `Retry-After` and a JSON-RPC error in the body (for
clients that read only the body), is recorded in the audit trail as denied, and is counted in
`mcpctl_rate_limited_total{scope, target}` (never the principal as a label).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from starlette.requests import Request
from starlette.responses import Response

from mcpctl.gateway import audit
from mcpctl.mcp import jsonrpc
from mcpctl.mcp.jsonrpc import Message
from mcpctl.models.rate_limit import RateLimit
from mcpctl.observability.metrics import Metrics
from mcpctl.store.database import Database
from mcpctl.store.tables import RateLimitBucketRow

RATE_LIMITED = -32029  # JSON-RPC's implementation-defined range; 429 mirrored
PROJECT_LIMIT_KEY = "rate_limit"  # request.state: the project's RateLimit, set by _target


@dataclass(frozen=True)
class RateLimitConfig:
    per_minute: int = 0  # each principal's calls per minute; 0: no limit
    burst: int = 0  # 0: per_minute
    max_chunk: int = 100  # tokens a replica leases at once, at most (and a tenth of the burst)
    lease_seconds: float = 1.0  # leased tokens unused this long are dropped


@dataclass
class _Local:
    """A replica's share of one bucket."""

    tokens: int = 0
    expires: float = 0.0
    chunk: int = 1
    blocked_until: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RateLimiter:
    def __init__(self, database: Database, metrics: Metrics, config: RateLimitConfig) -> None:
        self.database = database
        self.metrics = metrics
        self.config = config
        self._local: dict[str, _Local] = {}
        self._insert = postgresql_insert if database.url.startswith("postgresql") else sqlite_insert

    async def admit(self, key: str, per_minute: int, burst: int) -> float | None:
        """None when one call under this limit may go now, else the seconds to wait."""
        capacity = burst or per_minute
        now = time.monotonic()
        local = self._local.get(key)
        if local is None:
            if len(self._local) > 100_000:
                self._local.clear()
            local = self._local[key] = _Local()
        if local.tokens > 0 and now < local.expires:
            local.tokens -= 1
            return None
        if now < local.blocked_until:
            return local.blocked_until - now
        async with local.lock:  # one lease at a time per bucket and replica
            now = time.monotonic()
            if local.tokens > 0 and now < local.expires:
                local.tokens -= 1
                return None
            if now < local.blocked_until:
                return local.blocked_until - now
            if local.tokens > 0:  # expired with tokens left: lease less next time
                local.chunk = max(1, local.chunk // 2)
            elif local.expires:  # used up within its lease: lease more
                local.chunk = min(self._max_chunk(capacity), local.chunk * 2)
            want = min(local.chunk, self._max_chunk(capacity))
            granted, wait = await asyncio.to_thread(
                self.lease, key, per_minute / 60.0, capacity, want
            )
            now = time.monotonic()
            if granted == 0:
                local.tokens, local.expires = 0, 0.0
                local.blocked_until = now + wait
                return wait
            local.tokens, local.expires = granted - 1, now + self.config.lease_seconds
            return None

    def _max_chunk(self, capacity: int) -> int:
        return max(1, min(self.config.max_chunk, capacity // 10))

    def lease(self, key: str, rate: float, capacity: int, want: int) -> tuple[int, float]:
        """Take up to `want` tokens from the shared bucket, in one transaction holding its row:
        (tokens granted, seconds until one is there when none is)."""
        now = time.time()
        with self.database.transaction() as session:
            # Creates the full bucket the first time; on SQLite this write also takes the
            # database's write lock first, so the read below is not raced.
            session.execute(
                self._insert(RateLimitBucketRow)
                .values(key=key, tokens=float(capacity), updated=now)
                .on_conflict_do_nothing()
            )
            row = session.scalars(
                select(RateLimitBucketRow).where(RateLimitBucketRow.key == key).with_for_update()
            ).one()
            elapsed = max(0.0, now - row.updated)
            tokens = min(float(capacity), row.tokens + elapsed * rate)
            granted = min(want, int(tokens))
            row.tokens = tokens - granted
            row.updated = max(row.updated, now)
        if granted:
            return granted, 0.0
        return 0, (1.0 - tokens) / rate if rate > 0 else 60.0


def _counted(messages: list[Any]) -> list[Message]:
    """What takes a token: requests and notifications (whatever names a method)."""
    return [m for m in messages if isinstance(m, dict) and "method" in m]


async def check(request: Request, principal: Any, messages: list[Any]) -> Response | None:
    """The hook of mcp_endpoint.post: None when every request and notification of this POST
    may go, else the 429 to answer."""
    limiter: RateLimiter = request.app.state.rate_limiter
    config = limiter.config
    # Read from the scope's state dict: `request.state` would make its State and raise inside
    # getattr on every request of an endpoint without a limit.
    project_limit: RateLimit | None = request.scope.get("state", {}).get(PROJECT_LIMIT_KEY)
    if not config.per_minute and not (project_limit and project_limit.per_minute):
        return None
    counted = _counted(messages)
    if not counted:
        return None
    endpoint = audit._endpoint(request)
    for _ in counted:
        if config.per_minute:
            wait = await limiter.admit(f"u:{principal.email}", config.per_minute, config.burst)
            if wait is not None:
                return _refused(request, principal, counted[0], "principal", endpoint, wait)
        if project_limit and project_limit.per_minute and endpoint[1]:
            key = f"p:{endpoint[1]}"
            wait = await limiter.admit(key, project_limit.per_minute, project_limit.burst)
            if wait is not None:
                return _refused(request, principal, counted[0], "project", endpoint, wait)
    return None


def _refused(
    request: Request,
    principal: Any,
    message: Message,
    scope: str,
    endpoint: tuple[str, str | None, str | None],
    wait: float,
) -> Response:
    limiter: RateLimiter = request.app.state.rate_limiter
    limiter.metrics.rate_limited.labels(scope, endpoint[0]).inc()
    retry_after = max(1, math.ceil(wait))
    whose = "your" if scope == "principal" else "the project's"
    text = f"rate limit exceeded: {whose} calls per minute; retry after {retry_after} s"
    audit.denied(
        request, "rate_limited", text, status=429, principal=principal.email, message=message
    )
    body = jsonrpc.error(
        message.get("id"), RATE_LIMITED, text, {"retryAfter": retry_after, "scope": scope}
    )
    return Response(
        jsonrpc.dumps(body),
        status_code=429,
        media_type="application/json",
        headers={"Retry-After": str(retry_after)},
    )
