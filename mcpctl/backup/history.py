"""Instance history analytics with DuckDB: restarts, crash reasons, uptime and MTBF per server.

The store hands over only what the window needs (each replica's last event before it, which
says how the window opens, and every event inside it); an in-memory DuckDB turns them into
spans (from one event to the next) clipped to the window: time after `ready` counts as up;
time after `stopped` is not observed at all (mcpd meant it to be down).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import duckdb

from mcpctl.models.instance import InstanceEvent

WINDOW = re.compile(r"^(\d+)([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
MAX_WINDOW = timedelta(days=3650)

SUMMARY = """
WITH spans AS (
    SELECT server, replica, kind, reason, happened AS began,
           coalesce(
               lead(happened) OVER (PARTITION BY server, replica ORDER BY happened, seq), $end
           ) AS ended
    FROM events
), clipped AS (
    SELECT server, replica, kind, reason, began,
           greatest(began, $start) AS b, least(ended, $end) AS e
    FROM spans
    WHERE ended > $start AND began <= $end
)
SELECT server,
       count(DISTINCT replica) AS replicas,
       count(*) FILTER (WHERE kind IN ('crashed', 'failed') AND began >= $start) AS restarts,
       count(*) FILTER (WHERE kind = 'failed' AND began >= $start) AS failed_starts,
       count(*) FILTER (WHERE kind = 'crashed' AND began >= $start) AS crashes,
       coalesce(sum(epoch(e - b)) FILTER (WHERE kind IN ('ready')), 0) AS up_seconds,
       coalesce(sum(epoch(e - b)) FILTER (WHERE kind <> 'stopped'), 0) AS observed_seconds,
       max(began) FILTER (WHERE kind = 'crashed') AS last_crash
FROM clipped
GROUP BY server
ORDER BY server
"""

REASONS = """
SELECT server, reason, count(*) AS times
FROM events
WHERE kind IN ('crashed', 'failed') AND happened >= $start AND happened <= $end
GROUP BY server, reason
ORDER BY server, times DESC, reason
"""


def parse_window(text: str) -> timedelta:
    """`30m`, `24h`, `7d`: at most MAX_WINDOW; ValueError naming the window otherwise."""
    shown = text if len(text) <= 40 else text[:40] + "…"
    match = WINDOW.match(text.strip())
    if not match:
        raise ValueError(f"window {shown!r}: use a number and s, m, h or d (e.g. 30m, 24h, 7d)")
    number, unit = match.groups()
    # A number too long for timedelta (or for int) is too long a window all the same.
    if len(number) > 9 or timedelta(**{UNITS[unit]: int(number)}) > MAX_WINDOW:
        raise ValueError(f"window {shown!r}: at most {MAX_WINDOW.days}d")
    return timedelta(**{UNITS[unit]: int(number)})


def history(events: list[InstanceEvent], start: datetime, end: datetime) -> list[dict[str, Any]]:
    connection = duckdb.connect()
    try:
        connection.execute(
            "CREATE TABLE events (seq INTEGER, server VARCHAR, replica INTEGER, kind VARCHAR, "
            "reason VARCHAR, happened TIMESTAMPTZ)"
        )
        if events:
            connection.executemany(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (i, e.server, e.replica, e.kind.value, e.reason, e.at)
                    for i, e in enumerate(events)
                ],
            )
        bounds = {"start": start, "end": end}
        rows = connection.execute(SUMMARY, bounds).fetchall()
        reasons: dict[str, list[dict[str, Any]]] = {}
        for server, reason, times in connection.execute(REASONS, bounds).fetchall():
            reasons.setdefault(server, []).append({"reason": reason, "count": times})
    finally:
        connection.close()
    result = []
    for server, replicas, restarts, failed, crashes, up, observed, last_crash in rows:
        result.append(
            {
                "server": server,
                "replicas": replicas,
                "restarts": restarts,  # as `get` counts them: failed starts too
                "failedStarts": failed,  # of those, the starts that never became ready
                "uptimePercent": round(100 * up / observed, 2) if observed else None,
                "upSeconds": round(up, 1),
                "mtbfSeconds": round(up / crashes, 1) if crashes else None,
                "lastCrash": last_crash.isoformat() if last_crash else None,
                "crashReasons": reasons.get(server, [])[:5],
            }
        )
    return result
