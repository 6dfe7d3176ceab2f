"""History analytics over instance events, computed by DuckDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mcpctl.backup.history import history, parse_window
from mcpctl.models.instance import EventKind, InstanceEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(
    seconds: float,
    kind: EventKind,
    replica: int = 0,
    server: str = "web",
    reason: str | None = None,
) -> InstanceEvent:
    return InstanceEvent(
        server=server, replica=replica, kind=kind, reason=reason, at=T0 + timedelta(seconds=seconds)
    )


def test_restarts_uptime_mtbf_and_reasons() -> None:
    events = [
        event(0, EventKind.STARTED),
        event(10, EventKind.READY),
        event(310, EventKind.CRASHED, reason="exited with code 1: boom"),
        event(310, EventKind.STARTED),
        event(320, EventKind.READY),
        event(620, EventKind.CRASHED, reason="exited with code 1: boom"),
        event(620, EventKind.STARTED),
        event(630, EventKind.READY),
        event(0, EventKind.FAILED, server="db", reason="command not found: pg"),
    ]
    end = T0 + timedelta(seconds=1000)
    rows = {row["server"]: row for row in history(events, T0, end)}
    web = rows["web"]
    assert (web["replicas"], web["restarts"], web["failedStarts"]) == (1, 2, 0)
    assert web["upSeconds"] == 300 + 300 + 370
    assert web["uptimePercent"] == 97.0
    assert web["mtbfSeconds"] == 485.0
    assert web["crashReasons"] == [{"reason": "exited with code 1: boom", "count": 2}]
    assert web["lastCrash"] == (T0 + timedelta(seconds=620)).isoformat()
    db = rows["db"]  # a failed start is a restart, as `get` counts it; no crash, no MTBF
    assert (db["restarts"], db["failedStarts"], db["mtbfSeconds"]) == (1, 1, None)


def test_window_clips_and_stopped_time_is_not_downtime() -> None:
    events = [
        event(0, EventKind.STARTED),
        event(0, EventKind.READY),
        event(100, EventKind.STOPPED),
        event(500, EventKind.STARTED),
        event(500, EventKind.READY),
    ]
    start, end = T0 + timedelta(seconds=50), T0 + timedelta(seconds=600)
    [row] = history(events, start, end)
    assert row["upSeconds"] == 50 + 100
    assert row["uptimePercent"] == 100.0  # the stopped stretch is not counted against it
    assert row["restarts"] == 0


@pytest.mark.parametrize(
    ("text", "seconds"), [("30m", 1800), ("24h", 86400), ("7d", 604800), ("15s", 15)]
)
def test_windows(text: str, seconds: int) -> None:
    assert parse_window(text).total_seconds() == seconds


def test_bad_window_is_named() -> None:
    with pytest.raises(ValueError, match="window '2 weeks'"):
        parse_window("2 weeks")


def test_no_events_is_an_empty_report() -> None:
    assert history([], T0, T0 + timedelta(hours=1)) == []
