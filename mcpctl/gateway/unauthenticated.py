"""A budget of requests without a valid token, per source address.

Rate limits per principal start after authentication; before it, each request with a bad or
missing token still costs a token lookup (a database read or a signature check) and an audit
record. Each source address may make `burst` such requests, refilled at `per_second`; beyond
that it is answered 429 at once: no lookup, no audit row, counted in
mcpctl_auth_failures_total{reason="source_rate_limited"}. A good token from that address is
still served from the token cache. Behind a proxy the address is the client's only when uvicorn
trusts the proxy's X-Forwarded-For (FORWARDED_ALLOW_IPS).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from starlette.requests import HTTPConnection
from starlette.responses import Response

from mcpctl.gateway.errors import error_response

REASON = "source_rate_limited"
MAX_ADDRESSES = 10_000  # the least recently seen are forgotten first: memory stays bounded


@dataclass(frozen=True)
class SourceLimits:
    per_second: float = 5.0  # 0: no budget (unbounded)
    burst: int = 60


class SourceBudget:
    def __init__(self, limits: SourceLimits) -> None:
        self.limits = limits
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def exhausted(self, address: str) -> float | None:
        """Seconds until `address` may try again, or None while it has budget left."""
        if not self.limits.per_second:
            return None
        tokens = self._tokens(address, time.monotonic())
        return None if tokens >= 1 else (1 - tokens) / self.limits.per_second

    def spend(self, address: str) -> None:
        if not self.limits.per_second:
            return
        now = time.monotonic()
        self._buckets[address] = (max(self._tokens(address, now) - 1, 0.0), now)
        self._buckets.move_to_end(address)
        if len(self._buckets) > MAX_ADDRESSES:
            self._buckets.popitem(last=False)

    def _tokens(self, address: str, now: float) -> float:
        tokens, at = self._buckets.get(address, (float(self.limits.burst), now))
        return min(float(self.limits.burst), tokens + (now - at) * self.limits.per_second)


def source_address(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else "unknown"


def budget_of(conn: HTTPConnection) -> SourceBudget | None:
    budget: SourceBudget | None = getattr(conn.app.state, "source_budget", None)
    return budget


def over_budget(conn: HTTPConnection) -> Response | None:
    """A request refused for want of a valid token: spends the source's budget; the 429 to
    answer instead of recording and answering the refusal when the budget is spent."""
    budget = budget_of(conn)
    if budget is None:
        return None
    address = source_address(conn)
    wait = budget.exhausted(address)
    if wait is None:
        budget.spend(address)
        return None
    return too_many(conn, wait)


def too_many(conn: HTTPConnection, wait: float) -> Response:
    conn.app.state.metrics.auth_failures.labels(REASON).inc()
    seconds = max(1, math.ceil(wait))
    response = error_response(
        429,
        "too many requests without a valid token from this address; "
        f"retry in {seconds} s with a valid token",
    )
    response.headers["Retry-After"] = str(seconds)
    return response
