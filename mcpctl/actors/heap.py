"""Garbage collection for long-lived processes with a large start-up heap (mcpd, hosts)."""

from __future__ import annotations

import gc


def settle_heap() -> None:
    """Freeze what start-up allocated (Ray, pydantic schemas, SQLAlchemy) so collections no
    longer scan it, and collect young objects less often. With CPython's defaults, full
    collections of that heap took tens of ms each: the tail latency of every request in
    flight (bench.load: p99 130 ms -> 23 ms, 1,800 -> 3,600 calls/s)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)
