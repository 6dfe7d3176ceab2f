"""Backup analytics on real files in a real (in-process) DuckDB: tables, summary, diff, query,
Parquet export, and bad input refused by name with nothing written."""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import pytest
from starlette.testclient import TestClient

from mcpctl.backup import analytics
from mcpctl.backup.format import BackupError

PLAIN_ENV_VALUE = "plain-env-value-s3cr3t"


def doc(kind: str, name: str, spec: dict[str, Any], project: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "createdAt": "2026-03-01T10:00:00Z"}
    if project:
        metadata["project"] = project
    return {"kind": kind, "metadata": metadata, "spec": spec}


def write_backup(path: Path, items: list[dict[str, Any]], created_at: str) -> Path:
    backup = {
        "format": "mcpctl-backup",
        "version": 1,
        "createdAt": created_at,
        "mcpdVersion": "0.1.0",
        "items": items,
    }
    path.write_text(json.dumps(backup, indent=2))
    return path


def fleet(
    *, time_replicas: int = 2, env_value: str = PLAIN_ENV_VALUE, extra: bool = False
) -> list[dict[str, Any]]:
    """A small but complete backup: every kind, every server source, env values and refs."""
    items = [
        doc("User", "alice@example.com", {"role": "admin", "displayName": "Alice"}),
        doc("User", "bob@example.com", {}),  # role defaults to member
        doc(
            "Server",
            "github",
            {
                "transport": "streamable-http",
                "package": "@modelcontextprotocol/server-github",
                "runtime": "node",
                "port": 3000,
                "env": [
                    {"name": "LOG_LEVEL", "value": env_value},
                    {"name": "GITHUB_TOKEN", "secretRef": {"name": "github", "key": "token"}},
                ],
                "replicas": 3,
                "labels": {"team": "platform"},
            },
        ),
        doc("Server", "time", {"command": "uvx", "args": ["mcp-server-time"]}),  # replicas: 1
        doc(
            "Server",
            "fetch",
            {"package": "mcp-server-fetch", "runtime": "python", "replicas": time_replicas},
        ),
        doc("Server", "remote", {"url": "https://mcp.example.com/sse", "transport": "sse"}),
        doc("Server", "box", {"image": "ghcr.io/example/box:1", "replicas": 0}),
        doc(
            "Template",
            "py",
            {
                "description": "any PyPI server",
                "parameters": [{"name": "pkg"}, {"name": "tz", "required": False}],
                "server": {"package": "${pkg}", "runtime": "python", "args": ["${tz}"]},
            },
        ),
        doc(
            "Project",
            "dev",
            {
                "owner": "alice@example.com",
                "servers": ["time", "github"],
                "members": ["bob@example.com"],
            },
        ),
        doc("Project", "ops", {"servers": ["remote"]}),  # owned by the system user
        doc("Project", "empty", {"owner": "bob@example.com"}),
        doc(
            "Prompt",
            "review",
            {"text": "Review {pr}", "arguments": [{"name": "pr"}], "owner": "bob@example.com"},
            project="dev",
        ),
        doc("Prompt", "plan", {"text": "Plan the week"}, project="dev"),
        doc("Prompt", "page", {"text": "Who is on call?"}, project="ops"),
    ]
    if extra:
        items.append(doc("Server", "extra", {"command": "extra-server"}))
    return items


@pytest.fixture
def two(tmp_path: Path) -> tuple[Path, Path]:
    old = write_backup(tmp_path / "old.json", fleet(), "2026-03-01T00:00:00Z")
    new = write_backup(
        tmp_path / "new.json", fleet(time_replicas=5, extra=True), "2026-03-02T00:00:00Z"
    )
    return old, new


def test_tables_hold_one_flat_row_per_resource(two: tuple[Path, Path]) -> None:
    old, _ = two
    with analytics.Backups([str(old)]) as backups:
        servers = {row["name"]: row for row in backups.query("SELECT * FROM servers").records()}
        assert sorted(servers) == ["box", "fetch", "github", "remote", "time"]
        github = servers["github"]
        assert (github["transport"], github["source"], github["runtime"]) == (
            "streamable-http",
            "package",
            "node",
        )
        assert (github["replicas"], github["port"], github["env_count"]) == (3, 3000, 2)
        assert github["secret_ref_count"] == 1
        assert github["env_names"] == ["LOG_LEVEL", "GITHUB_TOKEN"]
        assert github["labels"] == {"team": "platform"}
        assert github["backup_file"] == str(old)
        assert github["backup_time"].isoformat() == "2026-03-01T00:00:00+00:00"
        spec = json.loads(github["spec"])
        assert spec["env"] == [
            {"name": "LOG_LEVEL"},
            {"name": "GITHUB_TOKEN", "secretRef": {"name": "github", "key": "token"}},
        ]
        # Omitted fields read as the API's defaults.
        assert (servers["time"]["transport"], servers["time"]["replicas"]) == ("stdio", 1)
        assert {n: servers[n]["source"] for n in servers} == {
            "box": "image",
            "fetch": "package",
            "github": "package",
            "remote": "url",
            "time": "command",
        }
        projects = backups.query(
            "SELECT name, owner, servers, members FROM projects ORDER BY name"
        ).rows
        assert projects == [
            ("dev", "alice@example.com", ["time", "github"], ["bob@example.com"]),
            ("empty", "bob@example.com", [], []),
            ("ops", "system@mcpctl.io", ["remote"], []),
        ]
        prompts = backups.query(
            "SELECT project, name, owner, argument_count, text_length FROM prompts ORDER BY 1, 2"
        ).rows
        assert prompts == [
            ("dev", "plan", "system@mcpctl.io", 0, len("Plan the week")),
            ("dev", "review", "bob@example.com", 1, len("Review {pr}")),
            ("ops", "page", "system@mcpctl.io", 0, len("Who is on call?")),
        ]
        templates = backups.query("SELECT name, parameter_count, parameters FROM templates").rows
        assert templates == [("py", 2, ["pkg", "tz"])]
        users = backups.query("SELECT email, role, display_name FROM users ORDER BY 1").rows
        assert users == [("alice@example.com", "admin", "Alice"), ("bob@example.com", "member", "")]
        assert backups.query("SELECT backup_file, item_count FROM backups").rows == [
            (str(old), len(fleet()))
        ]


def test_env_values_are_never_loaded(two: tuple[Path, Path], tmp_path: Path) -> None:
    with analytics.Backups([str(p) for p in two]) as backups:
        for table in analytics.TABLES:
            dump = json.dumps(backups.query(f"SELECT * FROM {table}").records(), default=str)
            assert PLAIN_ENV_VALUE not in dump, table
    target = tmp_path / "parquet"
    analytics.export_parquet([str(p) for p in two], target)
    for file in target.iterdir():
        assert PLAIN_ENV_VALUE.encode() not in file.read_bytes()


def test_summary_counts_and_the_newest_backup(two: tuple[Path, Path]) -> None:
    old, new = two
    summary = analytics.summary([str(new), str(old)], top=2)  # ordered by createdAt, not argv
    assert [b["file"] for b in summary["backups"]] == [str(old), str(new)]
    first, second = summary["backups"]
    assert {k: first[k] for k in ("users", "servers", "templates", "projects", "prompts")} == {
        "users": 2,
        "servers": 5,
        "templates": 1,
        "projects": 3,
        "prompts": 3,
    }
    assert (first["replicas"], second["replicas"]) == (3 + 1 + 2 + 1 + 0, 3 + 1 + 5 + 1 + 0 + 1)
    assert second["servers"] == 6
    assert summary["latest"] == str(new)
    assert summary["servers"] == [
        {"transport": "stdio", "source": "command", "runtime": "-", "servers": 2, "replicas": 2},
        {"transport": "sse", "source": "url", "runtime": "-", "servers": 1, "replicas": 1},
        {"transport": "stdio", "source": "image", "runtime": "-", "servers": 1, "replicas": 0},
        {
            "transport": "stdio",
            "source": "package",
            "runtime": "python",
            "servers": 1,
            "replicas": 5,
        },
        {
            "transport": "streamable-http",
            "source": "package",
            "runtime": "node",
            "servers": 1,
            "replicas": 3,
        },
    ]
    assert summary["replicas"] == {
        "total": 11,
        "active": 5,
        "stopped": 1,
        "top": [{"server": "fetch", "replicas": 5}, {"server": "github", "replicas": 3}],
    }
    assert summary["projects"] == [
        {"project": "dev", "owner": "alice@example.com", "prompts": 2},
        {"project": "ops", "owner": "system@mcpctl.io", "prompts": 1},
    ]
    assert summary["templates"] == [
        {"template": "py", "parameters": 2, "description": "any PyPI server"}
    ]
    assert summary["owners"] == [  # alice (1 project) falls outside the top 2
        {"owner": "system@mcpctl.io", "role": "system", "projects": 1, "prompts": 2},
        {"owner": "bob@example.com", "role": "member", "projects": 1, "prompts": 1},
    ]
    # The project without prompts is listed with 0 when the list is long enough.
    projects = analytics.summary([str(old)], top=10)["projects"]
    assert projects[-1] == {"project": "empty", "owner": "bob@example.com", "prompts": 0}


def test_an_empty_backup_counts_zero(two: tuple[Path, Path], tmp_path: Path) -> None:
    empty = write_backup(tmp_path / "empty.json", [], "2026-03-03T00:00:00Z")
    summary = analytics.summary([str(two[0]), str(empty)])
    assert summary["latest"] == str(empty)
    assert summary["backups"][1] == {
        "file": str(empty),
        "createdAt": "2026-03-03T00:00:00+00:00",
        "mcpdVersion": "0.1.0",
        **dict.fromkeys(["users", "servers", "templates", "projects", "prompts", "replicas"], 0),
    }
    assert summary["servers"] == summary["projects"] == summary["owners"] == []
    assert summary["replicas"] == {"total": 0, "active": 0, "stopped": 0, "top": []}
    removed = analytics.diff(str(two[0]), str(empty))
    assert len(removed["removed"]) == len(fleet()) and removed["unchanged"] == 0


def test_diff_names_added_removed_and_changed_fields(tmp_path: Path) -> None:
    old_items = fleet()
    new_items = fleet(time_replicas=5, env_value="another-plain-value", extra=True)
    new_items = [i for i in new_items if i["metadata"]["name"] != "page"]  # prompt removed
    for item in new_items:
        if item["metadata"]["name"] == "github":
            item["spec"]["labels"] = {"team": "infra"}
        if item["metadata"]["name"] == "review":
            item["spec"]["text"] = "Review {pr} carefully"
        if item["metadata"]["name"] == "dev" and item["kind"] == "Project":
            item["spec"]["members"] = []
        if item["metadata"]["name"] == "time":  # the same spec, written differently
            item["spec"] = {"replicas": 1, "args": ["mcp-server-time"], "command": "uvx"}
            item["metadata"]["updatedAt"] = "2026-03-02T00:00:00Z"
    old = write_backup(tmp_path / "old.json", old_items, "2026-03-01T00:00:00Z")
    new = write_backup(tmp_path / "new.json", new_items, "2026-03-02T00:00:00Z")

    result = analytics.diff(str(old), str(new))

    assert result["added"] == [{"kind": "Server", "name": "extra"}]
    assert result["removed"] == [{"kind": "Prompt", "name": "page", "project": "ops"}]
    assert result["changed"] == [
        {"kind": "Server", "name": "fetch", "fields": ["spec.replicas"]},
        {"kind": "Server", "name": "github", "fields": ["spec.env", "spec.labels.team"]},
        {"kind": "Project", "name": "dev", "fields": ["spec.members"]},
        {"kind": "Prompt", "name": "review", "project": "dev", "fields": ["spec.text"]},
    ]
    assert result["unchanged"] == len(new_items) - 1 - 4
    text = json.dumps(result)
    assert PLAIN_ENV_VALUE not in text and "another-plain-value" not in text
    same = analytics.diff(str(old), f"{old.parent}/./{old.name}")
    assert (same["added"], same["removed"], same["changed"]) == ([], [], [])
    assert same["unchanged"] == len(old_items)


def test_changed_fields_descend_objects_but_not_lists() -> None:
    old = {"spec": {"env": [{"name": "A", "value": "1"}], "resources": {"limits": {"cpu": "1"}}}}
    new = {"spec": {"env": [{"name": "A", "value": "2"}], "resources": {"limits": {}}, "x": 1}}
    assert analytics.changed_fields(old, new) == [
        "spec.env",
        "spec.resources.limits.cpu",
        "spec.x",
    ]


def test_query_across_files_tags_each_row(two: tuple[Path, Path]) -> None:
    old, new = two
    result = analytics.query(
        "SELECT backup_file, count(*) AS servers, sum(replicas) AS replicas"
        " FROM servers GROUP BY backup_file ORDER BY backup_file DESC",
        [str(old), str(new), f"{old.parent}/./{old.name}"],  # the same file again: read once
    )
    assert result.columns == ["backup_file", "servers", "replicas"]
    assert result.rows == [(str(old), 5, 7), (str(new), 6, 11)]
    joined = analytics.query(
        "SELECT p.backup_file, j.owner, count(*) AS prompts FROM prompts p"
        " JOIN projects j ON j.backup_file = p.backup_file AND j.name = p.project"
        f" WHERE p.backup_file = '{new}' GROUP BY ALL ORDER BY 2",
        [str(old), str(new)],
    )
    assert joined.rows == [(str(new), "alice@example.com", 2), (str(new), "system@mcpctl.io", 1)]


def test_queries_cannot_read_or_write_other_files(two: tuple[Path, Path], tmp_path: Path) -> None:
    secret = tmp_path / "other.csv"
    secret.write_text("a\n1\n")
    with analytics.Backups([str(two[0])]) as backups:
        with pytest.raises(analytics.AnalyticsError, match="query failed"):
            backups.query(f"COPY servers TO '{tmp_path / 'leak.csv'}'")
        with pytest.raises(analytics.AnalyticsError, match="query failed"):
            backups.query(f"SELECT * FROM read_csv('{secret}')")
        with pytest.raises(analytics.AnalyticsError, match="query failed"):
            backups.query("SET enable_external_access = true")
        assert backups.query("SELECT count(*) FROM servers").rows == [(5,)]
    assert not (tmp_path / "leak.csv").exists()


def test_parquet_export_reads_back(two: tuple[Path, Path], tmp_path: Path) -> None:
    target = tmp_path / "out"
    written = analytics.export_parquet([str(p) for p in two], target)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        f"{t}.parquet" for t in analytics.TABLES
    )
    assert written == [target / f"{t}.parquet" for t in analytics.TABLES]
    rows = duckdb.sql(
        f"SELECT backup_file, count(*), sum(replicas) FROM read_parquet('{target}/servers.parquet')"
        " GROUP BY ALL ORDER BY 1 DESC"
    ).fetchall()
    assert rows == [(str(two[0]), 5, 7), (str(two[1]), 6, 11)]
    labels = duckdb.sql(
        f"SELECT labels['team'] FROM read_parquet('{target}/servers.parquet') WHERE name = 'github'"
    ).fetchall()
    assert labels == [("platform",), ("platform",)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.json", "old.json", "out"]
    with pytest.raises(analytics.AnalyticsError, match="not an empty directory"):
        analytics.export_parquet([str(two[0])], target)


def corrupt_files(tmp_path: Path) -> list[tuple[str, Path, str]]:
    good = json.loads(
        write_backup(tmp_path / "good.json", fleet(), "2026-03-01T00:00:00Z").read_text()
    )
    text = json.dumps(good)
    cases = {
        "truncated.json": (text[: len(text) // 2], "not valid JSON"),
        "garbage.json": ("\x00\x01garbage", "not valid JSON"),
        "empty.json": ("", "not valid JSON"),
        "foreign.json": ('{"hello": "world"}', "not an mcpctl backup"),
        "future.json": (json.dumps({**good, "version": 99}), "unsupported backup version 99"),
        "bad-item.json": (
            json.dumps({**good, "items": [doc("Server", "x", {"image": "a", "url": "http://b"})]}),
            "set exactly one source",
        ),
        "secret.json": (
            json.dumps({**good, "items": [doc("Secret", "s", {"data": {"k": "v"}})]}),
            "never part of a backup",
        ),
    }
    found = []
    for name, (content, problem) in cases.items():
        (tmp_path / name).write_text(content)
        found.append((name, tmp_path / name, problem))
    (tmp_path / "latin1.json").write_bytes(text.replace("Alice", "Al\xefce").encode("latin-1"))
    found.append(("latin1.json", tmp_path / "latin1.json", "not UTF-8 text"))
    found.append(("missing.json", tmp_path / "missing.json", "cannot read"))
    return found


def test_bad_files_are_named_and_nothing_is_written(tmp_path: Path) -> None:
    for name, path, problem in corrupt_files(tmp_path):
        target = tmp_path / f"out-{name}"
        before = sorted(p.name for p in tmp_path.iterdir())
        with pytest.raises(BackupError) as raised:
            analytics.export_parquet([str(tmp_path / "good.json"), str(path)], target)
        message = str(raised.value)
        assert message.startswith(f"{path}:"), message
        assert problem in message, message
        assert "\n" not in message
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # no target, no staging
        with pytest.raises(BackupError, match=name):
            analytics.diff(str(tmp_path / "good.json"), str(path))


def test_file_names_are_not_globs(tmp_path: Path) -> None:
    bracketed = write_backup(tmp_path / "b[1].json", fleet(), "2026-03-01T00:00:00Z")
    write_backup(tmp_path / "b1.json", fleet(extra=True), "2026-03-02T00:00:00Z")
    result = analytics.query(
        "SELECT backup_file, count(*) FROM servers GROUP BY ALL", [str(bracketed)]
    )
    assert result.rows == [(str(bracketed), 5)]


def test_large_inputs_are_validated_in_worker_processes(
    two: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pools: list[int] = []

    class Pool(ProcessPoolExecutor):
        def __init__(self, workers: int, **options: Any) -> None:
            pools.append(workers)
            super().__init__(workers, **options)

    monkeypatch.setattr(analytics, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(analytics, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(analytics.os, "sched_getaffinity", lambda _: {0, 1})
    checked = analytics.validate([str(p) for p in two])
    assert pools == [2]
    assert [(c.path, c.items) for c in checked] == [(str(two[0]), 14), (str(two[1]), 15)]
    foreign = tmp_path / "foreign.json"
    foreign.write_text("[]")
    with pytest.raises(BackupError, match=f"^{foreign}: not an mcpctl backup"):
        analytics.validate([str(two[0]), str(foreign), str(two[1])])


@pytest.fixture
def populated(api: TestClient) -> TestClient:
    docs: list[tuple[str, dict[str, Any]]] = [
        ("users", {"metadata": {"name": "carol@example.com"}, "spec": {"role": "member"}}),
        (
            "servers",
            {
                "metadata": {"name": "clock"},
                "spec": {
                    "command": "uvx",
                    "args": ["mcp-server-time"],
                    "env": [{"name": "TZ", "value": PLAIN_ENV_VALUE}],
                    "replicas": 2,
                },
            },
        ),
        (
            "projects",
            {
                "metadata": {"name": "team"},
                "spec": {"owner": "carol@example.com", "servers": ["clock"]},
            },
        ),
    ]
    for plural, body in docs:
        assert api.post(f"/api/v1/{plural}", json=body).status_code == 201
    prompt = {
        "metadata": {"name": "hello"},
        "spec": {"text": "Hello {who}", "arguments": [{"name": "who"}]},
    }
    assert api.post("/api/v1/projects/team/prompts", json=prompt).status_code == 201
    return api


def test_a_backup_taken_by_mcpd_is_analysed(populated: TestClient, tmp_path: Path) -> None:
    first = tmp_path / "first.json"
    first.write_text(json.dumps(populated.get("/api/v1/backup").json()))
    assert (
        populated.put(
            "/api/v1/servers/clock",
            json={
                "metadata": {"name": "clock"},
                "spec": {"command": "uvx", "args": ["mcp-server-time"]},
            },
        ).status_code
        == 200
    )
    second = tmp_path / "second.json"
    second.write_text(json.dumps(populated.get("/api/v1/backup").json()))

    summary = analytics.summary([str(first), str(second)])
    assert [(b["servers"], b["replicas"], b["prompts"]) for b in summary["backups"]] == [
        (1, 2, 1),
        (1, 1, 1),
    ]
    assert summary["owners"] == [
        {"owner": "carol@example.com", "role": "member", "projects": 1, "prompts": 0},
        {"owner": "system@mcpctl.io", "role": "system", "projects": 0, "prompts": 1},
    ]
    result = analytics.diff(str(first), str(second))
    assert result["changed"] == [
        {"kind": "Server", "name": "clock", "fields": ["spec.env", "spec.replicas"]}
    ]
    assert (result["added"], result["removed"]) == ([], [])
    assert PLAIN_ENV_VALUE not in json.dumps(result)
