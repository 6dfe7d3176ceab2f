"""Audit summaries with DuckDB: calls, errors, denials and p95 duration per user x tool (a row
that aggregates several requests counts as many)."""

from __future__ import annotations

from typing import Any

import duckdb

SUMMARY = """
SELECT principal, server, method, name,
       sum(n)::BIGINT AS calls,
       coalesce(sum(n) FILTER (WHERE outcome IN ('tool_error', 'protocol_error', 'timeout')), 0)
           ::BIGINT AS errors,
       coalesce(sum(n) FILTER (WHERE outcome = 'denied'), 0)::BIGINT AS denied,
       quantile_cont(duration_ms, 0.95) FILTER (WHERE outcome <> 'denied') AS p95_ms
FROM events
GROUP BY principal, server, method, name
ORDER BY calls DESC, principal, server, method, name
"""


def summarize(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """`columns`: principal, server, method, name, outcome, duration_ms and count (how many
    requests a row stands for: unauthenticated denials are aggregated), of equal lengths."""
    connection = duckdb.connect()
    try:
        connection.execute(
            "CREATE TABLE events AS SELECT "
            "unnest($principal::VARCHAR[]) AS principal, unnest($server::VARCHAR[]) AS server, "
            "unnest($method::VARCHAR[]) AS method, unnest($name::VARCHAR[]) AS name, "
            "unnest($outcome::VARCHAR[]) AS outcome, "
            "unnest($duration_ms::DOUBLE[]) AS duration_ms, unnest($count::BIGINT[]) AS n",
            columns,
        )
        cursor = connection.execute(SUMMARY)
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        connection.close()
    for row in rows:
        if row["p95_ms"] is not None:
            row["p95_ms"] = round(row["p95_ms"], 3)
    return rows
