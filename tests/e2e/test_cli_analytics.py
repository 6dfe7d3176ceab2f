"""`mcpctl backup analyze|diff|query` on real backup files, in-process (no mcpd needed)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import duckdb
import pytest

from mcpctl.backup import analytics
from tests.e2e.conftest import Run
from tests.integration.test_analytics import (
    PLAIN_ENV_VALUE,
    corrupt_files,
    fleet,
    write_backup,
)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Run:
    # No mcpd anywhere: these commands must not need one.
    monkeypatch.setenv("MCPCTL_SERVER", "http://127.0.0.1:9")
    monkeypatch.setenv("MCPCTL_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.setattr("mcpctl.cli.output.console.width", 200)
    return Run(capsys)


@pytest.fixture
def files(tmp_path: Path) -> tuple[str, str]:
    old = write_backup(tmp_path / "old.json", fleet(), "2026-03-01T00:00:00Z")
    new_items = fleet(time_replicas=5, env_value="changed-plain-value", extra=True)
    new = write_backup(tmp_path / "new.json", new_items, "2026-03-02T00:00:00Z")
    return str(old), str(new)


def section(out: str, title: str) -> list[list[str]]:
    """The rows (split on whitespace) of the table printed under `title`."""
    lines = out.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def test_analyze_prints_summary_tables(run: Run, files: tuple[str, str]) -> None:
    old, new = files
    out, _ = run("backup", "analyze", old, new, "--top", "3")
    assert section(out, "Backups") == [
        [old, "2026-03-01T00:00:00+00:00", "2", "5", "1", "3", "3", "7"],
        [new, "2026-03-02T00:00:00+00:00", "2", "6", "1", "3", "3", "11"],
    ]
    assert section(out, f"Servers by transport, source and runtime ({new})")[0] == [
        "stdio",
        "command",
        "-",
        "2",
        "2",
    ]
    assert "Replicas wanted: 11 (5 servers scaled up, 1 at 0); top 3" in out
    assert section(out, "Replicas wanted")[:2] == [["fetch", "5"], ["github", "3"]]
    assert section(out, "Prompts per project") == [
        ["dev", "alice@example.com", "2"],
        ["ops", "system@mcpctl.io", "1"],
        ["empty", "bob@example.com", "0"],
    ]
    assert section(out, "Templates") == [["py", "2", "any", "PyPI", "server"]]
    assert section(out, "Owners of projects and prompts")[0] == [
        "system@mcpctl.io",
        "system",
        "1",
        "2",
    ]
    assert PLAIN_ENV_VALUE not in out


def test_analyze_json_is_the_summary(run: Run, files: tuple[str, str]) -> None:
    out, _ = run("backup", "analyze", "-o", "json", *files)
    assert json.loads(out) == analytics.summary(list(files))


def test_diff_lists_changes_by_field_without_values(run: Run, files: tuple[str, str]) -> None:
    old, new = files
    out, err = run("backup", "diff", old, new)
    lines = out.strip().split("\n")
    assert lines[0] == f"{old} → {new}: 1 added, 0 removed, 2 changed, 12 unchanged"
    assert [line.split() for line in lines[2:]] == [
        ["added", "Server", "extra", "-"],
        ["changed", "Server", "fetch", "spec.replicas"],
        ["changed", "Server", "github", "spec.env"],
    ]
    for value in (PLAIN_ENV_VALUE, "changed-plain-value"):
        assert value not in out and value not in err
    out, _ = run("backup", "diff", "-o", "json", old, new)
    data = json.loads(out)
    assert data["changed"][1] == {"kind": "Server", "name": "github", "fields": ["spec.env"]}
    assert "changed-plain-value" not in out


def test_query_outputs_csv_json_and_table(run: Run, files: tuple[str, str]) -> None:
    old, new = files
    sql = (
        "SELECT backup_file, count(*) AS servers, sum(replicas) AS replicas, list(name ORDER BY name)"
        " AS names FROM servers GROUP BY ALL ORDER BY min(backup_time)"
    )
    out, _ = run("backup", "query", sql, old, new, "-o", "csv")
    assert list(csv.reader(io.StringIO(out))) == [
        ["backup_file", "servers", "replicas", "names"],
        [old, "5", "7", '["box", "fetch", "github", "remote", "time"]'],
        [new, "6", "11", '["box", "extra", "fetch", "github", "remote", "time"]'],
    ]
    out, _ = run("backup", "query", sql, old, new, "-o", "json")
    assert json.loads(out)[0] == {
        "backup_file": old,
        "servers": 5,
        "replicas": 7,
        "names": ["box", "fetch", "github", "remote", "time"],
    }
    out, _ = run(
        "backup", "query", "SELECT name, backup_time, port FROM servers ORDER BY name LIMIT 2", old
    )
    assert [line.split() for line in out.strip().split("\n")] == [
        ["name", "backup_time", "port"],
        ["box", "2026-03-01T00:00:00+00:00", "NULL"],
        ["fetch", "2026-03-01T00:00:00+00:00", "NULL"],
    ]


def test_query_writes_parquet_tables(run: Run, files: tuple[str, str], tmp_path: Path) -> None:
    target = tmp_path / "tables"
    out, err = run(
        "backup", "query", "SELECT 1 AS one", *files, "--parquet", str(target), "-o", "csv"
    )
    assert out == "one\n1\n"
    assert err.strip() == f"wrote 6 tables as Parquet to {target}"
    count = duckdb.sql(
        f"SELECT count(*), count(DISTINCT backup_file) FROM read_parquet('{target}/prompts.parquet')"
    ).fetchall()
    assert count == [(6, 2)]


def test_bad_sql_fails_and_writes_nothing(run: Run, files: tuple[str, str], tmp_path: Path) -> None:
    target = tmp_path / "tables"
    out, err = run("backup", "query", "SELEC 1", *files, "--parquet", str(target), code=1)
    assert out == ""
    assert err.startswith("error: query failed: Parser Error") and err.count("\n") == 1
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.json", "old.json"]


@pytest.mark.parametrize("command", ["analyze", "diff", "query"])
def test_bad_files_fail_with_one_line_naming_the_file(
    run: Run, files: tuple[str, str], tmp_path: Path, command: str
) -> None:
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    for name, path, problem in corrupt_files(bad_dir):
        target = tmp_path / f"parquet-{name}"
        argv = {
            "analyze": ["backup", "analyze", files[0], str(path)],
            "diff": ["backup", "diff", files[0], str(path)],
            "query": ["backup", "query", "SELECT 1", files[0], str(path), "--parquet", str(target)],
        }[command]
        out, err = run(*argv, code=1)
        assert out == ""
        assert err.startswith(f"error: {path}: ") and problem in err, err
        assert err.count("\n") == 1, err
        assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "new.json", "old.json"]


def test_backup_without_a_subcommand_still_takes_a_backup(run: Run) -> None:
    _, err = run("backup", code=1)
    assert err.strip() == "error: say where to write the backup: -o FILE (or -o - for stdout)"
    out, _ = run("backup", "--help")
    for command in ("analyze", "diff", "query"):
        assert command in out


def test_unknown_output_format_is_refused(run: Run, files: tuple[str, str]) -> None:
    _, err = run("backup", "analyze", "-o", "yaml", files[0], code=1)
    assert err.strip() == "error: unknown output format 'yaml'; use table, json"
