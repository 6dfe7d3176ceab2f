"""Backup edges: a restore maps owners by email in any case, and `backup query`'s DuckDB spill
directory is private, unpredictable, out of reach of user SQL and removed afterwards."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from mcpctl.backup import analytics
from tests.integration.test_analytics import doc, fleet, write_backup


def test_a_restore_maps_owners_by_email_in_any_case(api: TestClient) -> None:
    backup = {
        "format": "mcpctl-backup",
        "version": 1,
        "createdAt": "2026-03-01T10:00:00Z",
        "items": [
            {"kind": "User", "metadata": {"name": "Carol@Example.com"}, "spec": {}},
            {
                "kind": "Project",
                "metadata": {"name": "p"},
                "spec": {"owner": "CAROL@example.COM", "members": ["carol@EXAMPLE.com"]},
            },
            {
                "kind": "Prompt",
                "metadata": {"name": "hi", "project": "p"},
                "spec": {"text": "hi", "owner": "Carol@example.com"},
            },
        ],
    }
    response = api.post("/api/v1/restore", json=backup)
    assert response.status_code == 200, response.text
    project = api.get("/api/v1/projects/p").json()["spec"]
    assert (project["owner"], project["members"]) == ("carol@example.com", ["carol@example.com"])
    prompt = api.get("/api/v1/projects/p/prompts/hi").json()["spec"]
    assert prompt["owner"] == "carol@example.com"


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system temp dir, for this test alone: what DuckDB leaves behind shows up here."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


@pytest.fixture
def backup_file(tmp_path: Path) -> str:
    return str(write_backup(tmp_path / "b.json", fleet(), "2026-03-01T10:00:00Z"))


def test_the_spill_directory_is_private_and_unpredictable(scratch: Path, backup_file: str) -> None:
    names = set()
    for _ in range(2):
        with analytics.Backups([backup_file]) as backups:
            [spill] = scratch.iterdir()
            setting = backups.connection.execute(
                "SELECT current_setting('temp_directory')"
            ).fetchone()
            assert setting is not None and Path(setting[0]) == spill
            assert stat.S_IMODE(spill.stat().st_mode) == 0o700
            assert spill.name != f"mcpctl-duckdb-{os.getpid()}"
            names.add(spill.name)
        assert list(scratch.iterdir()) == []  # removed with the connection
    assert len(names) == 2


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT 1 AS a) TO '{spill}/x.csv'",
        "COPY servers TO '{spill}/servers.parquet' (FORMAT parquet)",
        "ATTACH '{spill}/x.duckdb' AS x",
    ],
)
def test_user_sql_cannot_write_into_the_spill_directory(
    scratch: Path, backup_file: str, sql: str
) -> None:
    with analytics.Backups([backup_file]) as backups:
        [spill] = scratch.iterdir()
        with pytest.raises(analytics.AnalyticsError, match="query failed"):
            backups.query(sql.format(spill=spill))
        assert list(spill.iterdir()) == []
        # The session stays usable, and still in memory only.
        assert backups.query("SELECT count(*) AS n FROM servers").rows == [(5,)]
    assert list(scratch.iterdir()) == []


def test_query_diff_and_summary_leave_nothing_behind(
    scratch: Path, backup_file: str, tmp_path: Path
) -> None:
    assert analytics.query("SELECT count(*) FROM users", [backup_file]).rows == [(2,)]
    with pytest.raises(analytics.AnalyticsError):
        analytics.query("SELECT * FROM nowhere", [backup_file])
    other = write_backup(
        tmp_path / "c.json", [doc("User", "dan@example.com", {})], "2026-03-02T10:00:00Z"
    )
    assert analytics.diff(backup_file, str(other))["added"]
    assert analytics.summary([backup_file])["latest"] == backup_file
    assert list(scratch.iterdir()) == []
